// Checks the examples of openapi/openapi.yaml: every operation's request body and every
// documented response with content has at least one example per media type, and every example
// (request bodies, responses, parameters, schema `examples`) validates against its schema as
// JSON Schema draft 2020-12 (OpenAPI 3.1), with $refs resolved and formats checked.
//
//   node examples.mjs            exit 1 and one line per problem when anything is off
import { loadDoc, operations, deref, mediaExamples, makeValidator, formatErrors, isJson } from './lib.mjs';

const doc = loadDoc();
const compile = makeValidator(doc);
const compileStrict = makeValidator(doc, { strict: true }); // no member the schema does not describe
const problems = [];
const checked = new Set(); // media objects (shared through components) validated once
let nexamples = 0;

function checkMedia(where, ct, media, { required }) {
    const examples = mediaExamples(doc, media);
    if (required && examples.length === 0) problems.push(`${where} ${ct}: no example`);
    if (checked.has(media)) return;
    checked.add(media);
    if (!media.schema) {
        if (examples.length) problems.push(`${where} ${ct}: examples but no schema`);
        return;
    }
    const validate = compile(media.schema);
    for (const ex of examples) {
        nexamples++;
        if (ex.value === undefined) {
            problems.push(`${where} ${ct} example '${ex.name}': no value`);
            continue;
        }
        if (!isJson(ct) && typeof ex.value !== 'string') {
            problems.push(`${where} ${ct} example '${ex.name}': a ${ct} example must be a string`);
            continue;
        }
        if (!validate(ex.value)) {
            problems.push(
                `${where} ${ct} example '${ex.name}' does not match its schema:\n      ${formatErrors(validate.errors)}`,
            );
            continue;
        }
        const strict = compileStrict(media.schema);
        if (!strict(ex.value))
            problems.push(
                `${where} ${ct} example '${ex.name}' has members its schema does not describe:\n      ${formatErrors(strict.errors)}`,
            );
    }
}

let nops = 0;
for (const { where, op, params } of operations(doc, { webhooks: true })) {
    nops++;
    if (op.requestBody) {
        const body = deref(doc, op.requestBody);
        const content = body.content || {};
        if (Object.keys(content).length === 0) problems.push(`${where}: request body without content`);
        for (const [ct, media] of Object.entries(content))
            checkMedia(`${where} request`, ct, media, { required: true });
    }
    if (!op.responses || Object.keys(op.responses).length === 0) problems.push(`${where}: no responses`);
    for (const [status, raw] of Object.entries(op.responses || {})) {
        const resp = deref(doc, raw);
        for (const [ct, media] of Object.entries(resp.content || {}))
            checkMedia(`${where} ${status}`, ct, media, { required: true });
    }
    for (const prm of params) {
        if (!prm.schema) continue;
        const validate = compile(prm.schema);
        const values = [];
        if (prm.example !== undefined) values.push(['example', prm.example]);
        for (const [n, e] of Object.entries(prm.examples || {})) values.push([n, deref(doc, e).value]);
        for (const [n, v] of values) {
            nexamples++;
            if (!validate(v))
                problems.push(
                    `${where} parameter ${prm.in}:${prm.name} example '${n}':\n      ${formatErrors(validate.errors)}`,
                );
        }
    }
}

// The `examples` keyword of the component schemas (an array of instances in JSON Schema).
for (const [name, schema] of Object.entries(doc.components?.schemas || {})) {
    if (!Array.isArray(schema?.examples)) continue;
    const validate = compile({ $ref: `#/components/schemas/${name.replace(/~/g, '~0').replace(/\//g, '~1')}` });
    schema.examples.forEach((v, i) => {
        nexamples++;
        if (!validate(v))
            problems.push(`schema ${name} examples[${i}]:\n      ${formatErrors(validate.errors)}`);
    });
}

if (problems.length) {
    console.error(`examples: ${problems.length} problem(s):`);
    for (const p of problems) console.error(`  ${p}`);
    console.error(`examples: ${nexamples} examples of ${nops} operations checked; ${problems.length} failed`);
    process.exit(1);
}
console.log(`examples: ${nexamples} examples of ${nops} operations validate against their schemas`);
