/* MD5OfMessageAttributes; see include/rydes/md5attrs.h. */
#include "rydes/md5attrs.h"

#include "rydes/buf.h"
#include "rydes/mem.h"
#include "rydes/secret.h"

#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

unsigned char *md5attrs_base64_decode(const char *text, size_t *len)
{
    size_t n = strlen(text);
    if (n % 4)
        return NULL;
    unsigned char *out = xmalloc(n / 4 * 3 + 1);
    int got = n ? EVP_DecodeBlock(out, (const unsigned char *)text, (int)n) : 0;
    if (got < 0) {
        free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts the padding as zero bytes */
    size_t pad = n >= 2 && text[n - 1] == '=' ? (text[n - 2] == '=' ? 2 : 1) : 0;
    *len = (size_t)got - pad;
    return out;
}

static void put_chunk(struct buf *b, const void *data, size_t n)
{
    unsigned char len[4] = {(unsigned char)(n >> 24), (unsigned char)(n >> 16),
                            (unsigned char)(n >> 8), (unsigned char)n};
    buf_append(b, len, 4);
    buf_append(b, data, n);
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Encodes one attribute; false when it is malformed. */
static bool put_attribute(struct buf *b, const char *name, json_t *a)
{
    const char *type = json_string_value(json_object_get(a, "type"));
    json_t *v = json_object_get(a, "value");
    if (!type || !json_is_string(v))
        return false;
    put_chunk(b, name, strlen(name));
    put_chunk(b, type, strlen(type));
    if (strncmp(type, "Binary", 6) != 0) {
        buf_append(b, "\x01", 1);
        put_chunk(b, json_string_value(v), json_string_length(v));
        return true;
    }
    size_t n;
    unsigned char *raw = md5attrs_base64_decode(json_string_value(v), &n);
    if (!raw)
        return false;
    buf_append(b, "\x02", 1);
    put_chunk(b, raw, n);
    free(raw);
    return true;
}

bool md5attrs_hex(json_t *attrs, char *hex)
{
    hex[0] = '\0';
    size_t n = json_object_size(attrs);
    if (!json_is_object(attrs) || n == 0)
        return false;
    const char **names = xcalloc(n, sizeof *names);
    size_t i = 0;
    const char *key;
    json_t *unused;
    json_object_foreach(attrs, key, unused) names[i++] = key;
    qsort(names, n, sizeof *names, by_name);
    struct buf b;
    buf_init(&b);
    bool ok = true;
    for (i = 0; ok && i < n; i++)
        ok = put_attribute(&b, names[i], json_object_get(attrs, names[i]));
    if (ok)
        secret_md5_hex(b.data, b.len, hex);
    buf_cleanup(&b);
    free(names);
    return ok;
}
