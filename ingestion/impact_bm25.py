"""Impact-ordered BM25: each word's best postings read top-down, a bound on every chunk left unscored, and
exact scores for the few chunks that can reach the top k. Its cost follows the postings read, not the table.

A pass reads each informative word's next postings from chunk_terms in impact order (an index-only range scan
that starts where the last pass stopped), adds them up per chunk here, and scores exactly the chunks whose read
impacts weigh most. Postings come back as packed binary arrays and scores are kept between passes, so a deeper
pass costs only its new postings: at 1M chunks a pass that re-read and re-aggregated 100k postings in SQL spent
60 of its 104 ms unnesting and hash-aggregating them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
from psycopg import Connection
from psycopg.rows import tuple_row

# Impact BM25 scores exactly this many times the RRF candidates, best by partial score first.
RESCORE_FACTOR = 4

# A candidate's exact BM25 score from its postings of the question's words (primary-key lookups in chunk_terms).
EXACT_SCORE_SQL = """CROSS JOIN LATERAL (
    SELECT sum(t.idf * ct.tf * (%(k1)s + 1) / (ct.tf + %(k1)s * (1 - %(b)s + %(b)s * ct.dl / %(avgdl)s))) AS score
    FROM chunk_terms ct
    JOIN unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS t(lexeme, idf) ON t.lexeme = ct.lexeme
    WHERE ct.chunk_id = k.chunk_id AND ct.lexeme = ANY(%(lexemes)s::text[])
) e"""

# The exact scores of %(text_candidates)s, rounded to 9 decimals as exact BM25 ranks them (equal scores summed in
# another order must stay equal before ties go by id); chunks deleted since their postings were read drop out.
_SCORES_SQL = """
SELECT k.chunk_id, round(e.score::numeric, 9) FROM unnest(%(text_candidates)s::bigint[]) AS k(chunk_id)
""" + EXACT_SCORE_SQL + """
WHERE e.score IS NOT NULL
"""

# The next postings of each word, after (impact, chunk id) of the last one read, best first (equal impacts by
# chunk id): at most `more` of them, packed (int8send / float4send) so that 80k postings cross in ~10 ms where as
# rows they took ~30. {filter} narrows them to the collection (its own index) and product.
_POSTINGS_SQL = """
SELECT m.i, p.n, p.ids, p.impacts
FROM unnest(%(lexemes)s::text[], %(after_impacts)s::float8[], %(after_ids)s::bigint[], %(more)s::int[])
     WITH ORDINALITY AS m(lexeme, after_impact, after_id, more, i)
CROSS JOIN LATERAL (
    SELECT count(*) AS n, string_agg(int8send(r.chunk_id), ''::bytea) AS ids,
           string_agg(float4send(r.impact), ''::bytea) AS impacts
    FROM (
        SELECT ct.chunk_id, ct.impact FROM chunk_terms ct
        WHERE ct.lexeme = m.lexeme {filter} AND ct.impact <= m.after_impact
          AND (ct.impact < m.after_impact OR ct.chunk_id > m.after_id)
        ORDER BY ct.impact DESC, ct.chunk_id
        LIMIT m.more
    ) r
) p
"""

# The question's words in more than half the chunks are not read; each adds at most its IDF × its best impact.
_REST_FLOOR_SQL = """
SELECT coalesce(sum(t.idf * (SELECT ct.impact FROM chunk_terms ct WHERE ct.lexeme = t.lexeme {filter}
                             ORDER BY ct.impact DESC LIMIT 1)), 0)
FROM unnest(%(lexemes)s::text[], %(idfs)s::float8[]) AS t(lexeme, idf)
WHERE t.lexeme <> ALL(%(match_lexemes)s::text[])
"""


@cache
def _statement(template: str, by_collection: bool, by_product: bool) -> str:
    """*template* with its {filter}: built once per filter combination, not once per pass."""
    return template.format(filter=(" AND ct.collection = %(collection)s" if by_collection else "")
                           + (" AND ct.product = %(product)s" if by_product else ""))


@dataclass(frozen=True)
class TextRanking:
    """The impact side's ranking and how it was reached."""

    ids: list[int]
    per_term: int  # postings read per word by the last pass (the deepest word)
    rescored: int  # candidates the last pass scored exactly (counting those scored by earlier passes)
    passes: int
    certified: bool  # no chunk left out can score above the k-th returned (the top k equal exact BM25's)
    postings: int = 0  # read by all passes together (no pass reads a posting again)


@dataclass
class _Postings:
    """One word's postings read so far, best first."""

    lexeme: str
    idf: float
    ids: list[np.ndarray] = field(default_factory=list)
    impacts: list[np.ndarray] = field(default_factory=list)
    read: int = 0
    whole: bool = False  # the list ended before the depth asked for
    last: tuple[float, int] = (float("inf"), -1)  # (impact, chunk id) of the last posting read

    @property
    def theta(self) -> float:
        """No unread posting of this word weighs more than this (0 once the list is read whole)."""
        return 0.0 if self.whole else self.last[0]

    def add(self, n: int, asked: int, ids: bytes | None, impacts: bytes | None) -> None:
        self.whole = n < asked
        if not n:
            return
        new_ids, new_impacts = np.frombuffer(ids, ">i8").astype(np.int64), np.frombuffer(impacts, ">f4")
        self.ids.append(new_ids)
        self.impacts.append(new_impacts.astype(np.float64))
        self.read += n
        # The aggregate's input order is not guaranteed: the last posting is the least (impact, then highest id).
        low = new_impacts.min()
        self.last = (float(low), int(new_ids[new_impacts == low].max()))


def impact_ranking(conn: Connection, params: dict[str, Any], k: int, per_term: int, max_per_term: int,
                   collection: str | None = None, product: str | None = None) -> TextRanking:
    """Impact BM25's ranking for the question of *params* (``Searcher.statement_params``): ids, best first, at most
    params["candidates"].

    Each pass reads each word's postings down to its depth (per_term at first) and scores exactly the `rescore`
    chunks of highest excess. A chunk's score is at most floor + excess: floor = sum of IDF·theta over the words
    read (theta: the last impact read from a cut list, 0 for a list read whole) + IDF·(best impact) of the words
    not read (in more than half the chunks); excess = sum of IDF·(impact − theta) over the lists it was read in (0
    for a chunk read in none). When a chunk left unscored could still score above the k-th returned, the next pass
    reads four times deeper in the cut lists that weigh most in the bound (IDF × theta, largest first, until they
    cover the gap: common words with long lists are read deeper only when they must), up to max_per_term, and
    scores twice as many chunks, or 16 × the first at once when no list can be read deeper. The top k are then
    those of exact BM25 (equal scores may swap ids), as long as the stored impacts were computed at the current
    average chunk length (see migration 0008).
    """
    filters = (collection is not None, product is not None)
    postings_sql = _statement(_POSTINGS_SQL, *filters)
    cur = conn.cursor(row_factory=tuple_row, binary=True)
    lists = [_Postings(w, idf) for w, idf in zip(params["match_lexemes"], params["match_idfs"], strict=True)]
    rest_floor = 0.0
    if set(params["lexemes"]) - set(params["match_lexemes"]):
        rest_floor = float(cur.execute(_statement(_REST_FLOOR_SQL, *filters), params).fetchone()[0])
    depths, rescore, passes = [per_term] * len(lists), params["rescore"], 0
    most = max(16 * params["rescore"], 4 * k)  # candidates scored exactly in a pass, at most
    scores: dict[int, Decimal] = {}
    while True:
        passes += 1
        _read_to(cur, lists, depths, postings_sql, params)
        excess_ids, excess = _excess(lists)
        order = _best(excess_ids, excess, rescore + 1)
        best, after = excess_ids[order[:rescore]], order[rescore:]
        next_excess = float(excess[after[0]]) if len(after) else None
        _score(cur, [int(i) for i in best if int(i) not in scores], scores, params)
        ranked = sorted(scores, key=lambda i: (-scores[i], i))
        ids = ranked[:params["candidates"]]
        read_floor = sum(p.idf * p.theta for p in lists)
        ceiling = read_floor + rest_floor + (next_excess or 0.0)
        if not excess_ids.size:
            certified, gap = True, 0.0  # no posting of any informative word (or none in the filter)
        elif read_floor == 0 and next_excess is None:
            certified, gap = True, 0.0  # every matching chunk scored
        else:
            gap = ceiling - float(scores[ranked[k - 1]]) if len(ranked) >= k else float("inf")
            certified = gap <= 1e-9 * max(1.0, ceiling)
        deeper = [] if certified else sorted(
            (i for i, p in enumerate(lists) if p.theta > 0 and depths[i] < max_per_term),
            key=lambda i: -lists[i].idf * lists[i].theta)
        if not deeper and (certified or next_excess is None or rescore >= most):
            return TextRanking(ids, max(depths, default=per_term), rescore, passes, certified,
                               sum(p.read for p in lists))
        covered = 0.0
        for i in deeper:
            depths[i] = min(4 * depths[i], max_per_term)
            covered += lists[i].idf * lists[i].theta
            if covered >= gap:
                break
        # Nothing left to read deeper: only scoring more candidates can still help, so one pass scores as many as
        # a pass may rather than doubling them pass after pass.
        rescore = most if not deeper else min(2 * rescore, most)


def _read_to(cur: Any, lists: list[_Postings], depths: list[int], sql: str, params: dict[str, Any]) -> None:
    """Read each cut list's next postings, down to its depth (one statement for all of them)."""
    todo = [i for i, p in enumerate(lists) if not p.whole and p.read < depths[i]]
    if not todo:
        return
    asked = [depths[i] - lists[i].read for i in todo]
    rows = cur.execute(sql, {
        **params, "lexemes": [lists[i].lexeme for i in todo], "more": asked,
        "after_impacts": [lists[i].last[0] for i in todo], "after_ids": [lists[i].last[1] for i in todo],
    }).fetchall()
    for position, n, ids, impacts in rows:
        j = position - 1
        lists[todo[j]].add(n, asked[j], ids, impacts)


def _excess(lists: list[_Postings]) -> tuple[np.ndarray, np.ndarray]:
    """Every chunk read and its excess: the sum of IDF·(impact − theta) over the lists it was read in."""
    parts = [(ids, p.idf * (impacts - p.theta)) for p in lists for ids, impacts in zip(p.ids, p.impacts,
                                                                                        strict=True)]
    if not parts:
        return np.empty(0, np.int64), np.empty(0)
    ids, inverse = np.unique(np.concatenate([i for i, _ in parts]), return_inverse=True)
    return ids, np.bincount(inverse, weights=np.concatenate([w for _, w in parts]), minlength=len(ids))


def _best(ids: np.ndarray, excess: np.ndarray, n: int) -> np.ndarray:
    """Positions of the *n* chunks of highest excess (rounded to 1e-6, equal ones by id), best first."""
    key = -np.round(excess * 1e6)
    pick = np.flatnonzero(key <= np.partition(key, n - 1)[n - 1]) if len(key) > n else np.arange(len(key))
    return pick[np.lexsort((ids[pick], key[pick]))][:n]


def _score(cur: Any, candidates: list[int], scores: dict[int, Decimal], params: dict[str, Any]) -> None:
    """Add the exact scores of *candidates* (those not scored by an earlier pass) to *scores*."""
    if candidates:
        scores.update(cur.execute(_SCORES_SQL, {**params, "text_candidates": candidates}).fetchall())
