-- Conversations, messages, the passages each answer used, feedback and handoff requests.
-- Everything a chat needs lives here, so any app replica can serve any turn.
-- depends: 0002.bm25-statistics

CREATE TABLE conversations (
    id          uuid        PRIMARY KEY,
    channel     text        NOT NULL DEFAULT 'api',     -- chat | api | openai | cli
    user_ref    text,                                   -- who, when known (an agent's name, a widget's id)
    collection  text,
    product     text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE messages (
    id               uuid        PRIMARY KEY,
    conversation_id  uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role             text        NOT NULL CHECK (role IN ('user', 'assistant')),
    content          text        NOT NULL,
    standalone       text,                               -- the condensed question (user turns)
    handoff_reason   text,                               -- set when the answer handed off
    model            text,
    adapter          text,
    ttft_ms          integer,
    total_ms         integer,
    created_at       timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX messages_conversation ON messages (conversation_id, created_at);

-- A copy of each passage as the answer saw it: citations stay valid after re-ingestion.
CREATE TABLE message_passages (
    message_id    uuid     NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    number        integer  NOT NULL,                     -- the [n] in the answer
    cited         boolean  NOT NULL DEFAULT false,
    chunk_id      bigint,
    document_id   bigint,
    title         text     NOT NULL,
    source        text     NOT NULL,
    heading_path  text[]   NOT NULL DEFAULT '{}',
    page          integer,
    text          text     NOT NULL,
    score         double precision,
    PRIMARY KEY (message_id, number)
);

CREATE TABLE feedback (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    message_id  uuid        NOT NULL REFERENCES messages (id) ON DELETE CASCADE,
    rating      smallint    NOT NULL CHECK (rating IN (-1, 1)),
    comment     text,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE handoffs (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    conversation_id  uuid        NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    message_id       uuid        REFERENCES messages (id) ON DELETE SET NULL,
    reason           text        NOT NULL,
    transcript       jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'taken', 'closed')),
    created_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX handoffs_open ON handoffs (created_at) WHERE status = 'open';
