-- The adapter registry: trained tone adapters, and which one is live for which scope.
-- depends: 0003.conversations

CREATE TABLE adapters (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    version      text        NOT NULL UNIQUE,
    method       text        NOT NULL,                 -- qlora | lora | full | ia3
    base_model   text        NOT NULL,
    data_hash    text        NOT NULL,                 -- sha256 of the training set it learned from
    path         text        NOT NULL,                 -- folder (PEFT format, or full weights)
    metrics      jsonb       NOT NULL DEFAULT '{}',
    config       jsonb       NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now()
);

-- Append-only: the live adapter of a scope is its latest row; rollback appends the one before.
-- scope '*' is the default; 'collection:NAME' or 'product:NAME' override it for those chats.
CREATE TABLE adapter_deployments (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    scope        text        NOT NULL DEFAULT '*',
    adapter_id   bigint      REFERENCES adapters (id), -- NULL: the base model alone
    action       text        NOT NULL CHECK (action IN ('promote', 'rollback')),
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX adapter_deployments_scope ON adapter_deployments (scope, id DESC);

-- Training jobs started over HTTP; any replica can report their status.
CREATE TABLE training_jobs (
    id           uuid        PRIMARY KEY,
    status       text        NOT NULL DEFAULT 'queued' CHECK (status IN ('queued', 'running', 'succeeded', 'failed')),
    request      jsonb       NOT NULL,
    report       jsonb,
    error        text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
