-- 007: Wild Rydes prebookings: asynchronous tasks (202 Accepted + polling), prebookings, the
-- data lake of submissions, and the prebooking channels of the topology.

-- A unit of asynchronous work an app polls: pending -> processing -> succeeded | failed.
CREATE TABLE tasks (
    id           uuid        PRIMARY KEY,
    kind         text        NOT NULL CHECK (kind IN ('prebooking')),
    status       text        NOT NULL DEFAULT 'pending'
                             CHECK (status IN ('pending', 'processing', 'succeeded', 'failed')),
    result_id    uuid,       -- the resource a succeeded task made (a prebooking)
    error_title  text,
    error_detail text,
    attempts     int         NOT NULL DEFAULT 0, -- processing attempts (redeliveries show here)
    submitted_at timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CHECK ((status = 'succeeded') = (result_id IS NOT NULL)),
    CHECK ((status = 'failed') = (error_title IS NOT NULL))
);

CREATE INDEX tasks_open ON tasks (submitted_at) WHERE status IN ('pending', 'processing');

CREATE TABLE prebookings (
    id            uuid        PRIMARY KEY,
    task_id       uuid        NOT NULL UNIQUE REFERENCES tasks (id),
    from_location text        NOT NULL,
    to_location   text        NOT NULL,
    customer      text        NOT NULL,
    pickup_at     timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX prebookings_customer ON prebookings (customer, pickup_at);

-- prebooking-datalake: one row per submission, append-only.
CREATE TABLE prebooking_submissions (
    task_id     uuid        PRIMARY KEY,
    submission  jsonb       NOT NULL,
    ingested_at timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE tasks IS 'asynchronous work apps poll (GET /tasks/{id})';
COMMENT ON TABLE prebookings IS 'prebookings made by the prebooking-processing worker';
COMMENT ON TABLE prebooking_submissions IS 'prebooking-datalake: every submission, as sent';

-- Tasks not final yet, oldest first, with how long they have waited: the campaign backlog.
CREATE VIEW open_tasks AS
SELECT id, kind, status, attempts, submitted_at, now() - submitted_at AS waiting
FROM tasks WHERE status IN ('pending', 'processing')
ORDER BY submitted_at;
