-- A denser HNSW graph: m 32 and ef_construction 128 (pgvector's defaults are 16 and 64). On the
-- search benchmark's 100k synthetic chunks (each of 469 real chunks copied ~200 times, perturbed),
-- recall@10 at ef_search 400 goes from 0.85 to 0.95 (0.68 → 0.84 at ef_search 100); the build takes
-- about 3.5 times as long (25 s → 89 s at 100k on 2 busy cores); the index stays about as large (212 MB
-- vs 205 MB at 100k).
-- The build keeps the graph in maintenance_work_mem (about 2.1 kB per chunk: 212 MB at 100k); past it,
-- it goes on on disk, far slower (at 1M chunks with 1 GB: 400k rows in 10 min, then 45k in the next
-- 8 min). Deployments of more than ~400k chunks: raise the SET LOCAL below (≥ 2.5 GB at 1M, if the
-- machine has it) before upgrading.
-- depends: 0008.bm25-impact-postings

SET LOCAL maintenance_work_mem = '1GB';
DROP INDEX IF EXISTS chunks_embedding_hnsw;
CREATE INDEX chunks_embedding_hnsw ON chunks USING hnsw (embedding vector_cosine_ops)
    WITH (m = 32, ef_construction = 128);
