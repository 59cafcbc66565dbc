"""Deciding each item's verdict from its scored pairs: eleven named SQL steps, each a table
over those before it, that run alike on DuckDB and Spark (`decide_steps`):

ranked → evidence → cand_addr, addr_check → household → gated → gated2 → (the namesake bar)
→ gated3 → flagged → linked.

The person gate (`gated` … `gated3`) and the flags are explained in `link.py`'s docstring and
docs/decisions/2026-11-30-person-gate-weighs-the-evidence.md.
"""

from __future__ import annotations

import math

from custodes.matching import standardize as std
from custodes.matching.exact import double, floor_weight, grid, on_grid
from custodes.matching.model import Thresholds
from custodes.store.steps import Steps


def decide_steps(st: Steps, t: Thresholds, envelope_periods: list[int], own_periods: bool) -> None:
    """The deciding steps, in order, each a named SQL table over those before it (DuckDB or
    Spark): ranked → evidence → cand_addr, addr_check → household → gated → gated2 →
    (the namesake bar, two counts) → gated3 → flagged → linked."""
    step_ranked(st)
    step_evidence(st, t)
    step_cand_addr(st)
    step_addr_check(st, envelope_periods, own_periods)
    step_household(st)
    step_gated(st, t)
    step_gated2(st)
    bits = namesake_bits(st, t)
    step_gated3(st, t, bits)
    step_flagged(st, bits)
    step_linked(st, t, bits)


def step_ranked(st: Steps) -> None:
    """The best two candidates of each item: by match weight (on the grid, `exact.py`, so the
    same bits on both engines), equal weights by the master record's key (a total order: both
    engines choose the same candidate and runner-up)."""
    st.table(
        "ranked",
        """SELECT * FROM (
             SELECT *, row_number() OVER (PARTITION BY item_id
                                          ORDER BY match_weight DESC, record_id) AS rank
             FROM pairs) WHERE rank <= 2""",
        reused=True,
    )


def step_evidence(st: Steps, t: Thresholds) -> None:
    """Each item with its best candidate and runner-up, and every comparison the gate uses."""
    floor_w = floor_weight(t.floor_probability)
    st.table(
        "evidence",
        f"""WITH b AS (SELECT * FROM ranked WHERE rank = 1),
             s AS (SELECT * FROM ranked WHERE rank = 2)
        SELECT r.uid AS item_id, b.record_id, b.match_probability AS probability,
               b.match_weight AS weight, s.record_id AS runner_up_record_id,
               s.match_probability AS runner_up_probability, s.match_weight AS runner_up_weight,
               b.match_weight - coalesce(s.match_weight, {double(floor_w)}) AS margin_bits,
               b.w_first, b.w_last, b.w_middle, b.w_dob, b.w_tin, b.w_address,
               r.first AS r_first, m.first AS m_first, r.dob AS r_dob, m.dob AS m_dob,
               r.suffix AS r_suffix, m.suffix AS m_suffix, r.tin AS r_tin, m.tin AS m_tin,
               r.last AS r_last, m.last AS m_last, m.hh_key,
               coalesce(r.middle = m.middle, FALSE) AS middle_exact,
               -- middle names (or initials) that say another person
               coalesce(left(r.middle, 1) <> left(m.middle, 1), FALSE) AS middle_conflict,
               r.first = m.first AS first_exact,
               nk.a IS NOT NULL AS first_nick,
               {_jw("r.first", "m.first")} AS first_jw,
               damerau_levenshtein(r.first, m.first) AS first_edits,
               {soundex("r.first")} = {soundex("m.first")} AS first_sounds_alike,
               -- first and last name written the other way round (each within a typo); or
               -- only one of them moved, the other field holding something else
               coalesce({_jw("r.first", "m.last")} >= 0.88
                        AND {_jw("r.last", "m.first")} >= 0.88, FALSE)
                 AS names_swapped,
               coalesce(NOT ({_jw("r.first", "m.last")} >= 0.88
                             AND {_jw("r.last", "m.first")} >= 0.88)
                        AND (r.first = m.last OR r.last = m.first), FALSE) AS name_moved,
               CASE WHEN r.first IS NOT NULL THEN kf.name IS NOT NULL END AS first_is_a_name,
               coalesce(r.house = m.house AND (r.zip5 = m.zip5 OR r.city = m.city), FALSE)
                 AS same_house,
               r.dob = m.dob AS dob_exact,
               (left(r.dob, 4) = left(m.dob, 4)
                AND (damerau_levenshtein(substr(r.dob, 6), substr(m.dob, 6)) <= 1
                     OR (substr(r.dob, 6, 2) = substr(m.dob, 9, 2)
                         AND substr(r.dob, 9, 2) = substr(m.dob, 6, 2)))) AS dob_near,
               damerau_levenshtein(replace(r.dob, '-', ''), replace(m.dob, '-', '')) <= 1
                 AS dob_one_digit,
               r.tin IS NOT NULL AND r.tin = m.tin AS tin_exact,
               r.tin IS NOT NULL AND m.tin IS NOT NULL AND r.tin <> m.tin
                 AND damerau_levenshtein(r.tin, m.tin) <= 1 AS tin_one_edit,
               -- the listed TIN is another filer's (a household member's, a relative's)
               coalesce(r.tin <> m.tin AND te.tin IS NOT NULL, FALSE) AS tin_elsewhere,
               -- an ITIN that no filer holds, listed for a record that holds an SSN: the
               -- number the person used before the SSN was issued; it says nothing either way
               coalesce({_is_itin("r.tin")} AND NOT {_is_itin("m.tin")}
                        AND te.tin IS NULL, FALSE)
                 AS itin_for_ssn,
               -- a surname that agrees, is a part of the other (hyphenated, two-part) or close
               coalesce(r.last = m.last
                        OR (length(r.last) >= 4 AND length(m.last) >= 4
                            AND (starts_with(m.last, r.last) OR starts_with(r.last, m.last)
                                 OR ends_with(m.last, r.last) OR ends_with(r.last, m.last)))
                        OR {_jw("r.last", "m.last")} >= 0.9
                        OR ({_jw("r.first", "m.last")} >= 0.88
                            AND {_jw("r.last", "m.first")} >= 0.88)
                        OR r.first = m.last, FALSE)
                   AS last_agrees
        -- (joins, not subqueries in the select list: Spark runs those only in a filter)
        FROM r LEFT JOIN b ON b.item_id = r.uid LEFT JOIN s ON s.item_id = r.uid
        LEFT JOIN m ON m.uid = b.record_id
        LEFT JOIN (SELECT DISTINCT a, b FROM nick) nk ON nk.a = r.first AND nk.b = m.first
        LEFT JOIN (SELECT DISTINCT name FROM known_first) kf ON kf.name = r.first
        LEFT JOIN (SELECT DISTINCT tin FROM m WHERE tin IS NOT NULL) te ON te.tin = r.tin""",
        reused=True,
    )


def step_household(st: Steps) -> None:
    """Household flags: another person at the candidate's last address with a similar surname;
    one with the same first name (Jr/Sr, II); a twin (same surname and date of birth)."""
    st.table(
        "household",
        f"""SELECT g.item_id,
          bool_or({_jw("o.last", "g.m_last")} >= 0.9) AS household,
          bool_or(o.first = g.m_first AND {_jw("o.last", "g.m_last")} >= 0.9)
            AS generational,
          bool_or(o.dob = g.m_dob AND {_jw("o.last", "g.m_last")} >= 0.9) AS twin
        FROM evidence g JOIN m o ON o.hh_key = g.hh_key AND o.uid <> g.record_id
        WHERE g.record_id IS NOT NULL AND g.hh_key <> ''
        GROUP BY g.item_id""",
        reused=True,
    )


def step_gated(st: Steps, t: Thresholds) -> None:
    """The person gate, each part."""
    jw = t.first_name_similarity
    # The person gate, one column per part, so that an officer sees which part failed. The
    # evidence that belongs to one person is the first name, the date of birth and the TIN;
    # surname and address are shared by a household (MATCHING.md §2.3). A match needs two of
    # the three to agree and none to contradict, or — when a corrupted list replaced one of
    # them — two to agree and the third outweighed by the household's evidence
    # (docs/decisions/2026-11-30-person-gate-weighs-the-evidence.md).
    st.table(
        "gated",
        f"""WITH g AS (
          SELECT e.*, coalesce(c.any_year, FALSE) AS addr_on_record,
            coalesce(h.household, FALSE) AS hh_any,
            coalesce(h.generational, FALSE) AS hh_generational,
            coalesce(h.twin, FALSE) AS hh_twin,
            tin_exact OR tin_one_edit AS tin_agrees,
            -- a first name that is close but not the same (typo, nickname, sound-alike)
            coalesce(NOT first_exact AND NOT names_swapped
                     AND (first_nick OR first_jw >= {double(jw)}
                          OR (length(r_first) >= 5 AND first_edits <= 2)
                          OR (length(r_first) >= 3 AND first_edits <= 1)
                          OR (length(r_first) >= 3 AND first_sounds_alike)), FALSE)
              AS first_fuzzy
          FROM evidence e LEFT JOIN addr_check c USING (item_id)
          LEFT JOIN household h USING (item_id)),
        d AS (
          SELECT *,
            -- a date of birth one keystroke off (a digit changed, two transposed) counts when
            -- the TIN agrees exactly; without the TIN, when it is less than a generation away
            -- and first name, surname and house agree with no namesake living there (a Jr/Sr
            -- would be at the house) and no middle name that says otherwise (two brothers
            -- named JASON, six years apart, the younger not a filer: 5M x 1M, 2026-11-30)
            coalesce(dob_one_digit
                     AND (tin_exact
                          -- or within one typo of the record's TIN (a number nobody else
                          -- holds; a twin's consecutive SSN comes with a different first name)
                          OR (tin_one_edit AND NOT tin_elsewhere AND first_exact
                              AND last_agrees AND NOT middle_conflict)
                          OR (abs(year(try_cast(r_dob AS DATE)) - year(try_cast(m_dob AS DATE)))
                                < {double(t.generation_years)}
                              AND first_exact AND last_agrees AND (addr_on_record OR same_house)
                              AND NOT hh_generational AND NOT middle_conflict)), FALSE)
              AS dob_typo,
            -- a close first name that is nobody's name (not a sibling's JOAN for JOHN)
            coalesce(first_fuzzy AND NOT first_is_a_name AND dob_exact AND last_agrees
                     AND NOT middle_conflict
                     AND (length(r_first) >= 5 AND first_edits <= 2 OR first_jw >= {double(jw)}
                          OR first_edits <= 1),
                     FALSE) AS first_misspelt
          FROM g)
        SELECT *,
          -- a close first name counts with a TIN or a middle name that agrees; without one it
          -- counts only as a misspelling — a spelling that is nobody's name, with the date of
          -- birth exact and the surname agreeing — because a twin or a sibling with a similar
          -- name (JOHN, JOAN) shares everything else
          coalesce(first_exact OR names_swapped OR r_last = m_first
                   OR (first_fuzzy AND (middle_exact OR tin_agrees)) OR first_misspelt, FALSE)
            AS first_ok,
          coalesce(first_fuzzy AND NOT (middle_exact OR tin_agrees) AND NOT first_misspelt,
                   FALSE) AS first_uncorroborated,
          -- a first name moved to the surname's field is not there to compare: neither
          -- agreement nor contradiction
          coalesce(r_first IS NOT NULL AND m_first IS NOT NULL AND NOT first_exact
                   AND NOT names_swapped AND NOT name_moved AND NOT first_fuzzy, FALSE)
            AS first_conflict,
          -- a date of birth agrees exactly, or by a day/month typo in the same year, or by one
          -- keystroke as above
          coalesce(dob_exact OR dob_near OR dob_typo, FALSE) AS dob_ok,
          coalesce(r_dob IS NOT NULL AND m_dob IS NOT NULL
                   AND NOT (dob_exact OR dob_near OR dob_typo), FALSE) AS dob_conflict,
          coalesce(r_tin IS NOT NULL AND m_tin IS NOT NULL AND NOT tin_agrees
                   AND NOT itin_for_ssn, FALSE) AS tin_differs,
          coalesce(r_suffix IS NOT NULL AND m_suffix IS NOT NULL AND r_suffix <> m_suffix, FALSE)
            AS suffix_conflict
        FROM d""",
    )


def step_gated2(st: Steps) -> None:
    st.table(
        "gated2",
        """SELECT *,
          first_ok::INT + dob_ok::INT + tin_agrees::INT AS person_agree,
          first_conflict::INT + dob_conflict::INT + tin_differs::INT AS person_conflict
        FROM gated""",
        reused=True,
    )


def namesake_bits(st: Steps, t: Thresholds) -> float:
    """The bits a match resting on name and date of birth alone must carry."""
    # A match that no TIN and no address on record supports may be a namesake born the same
    # day (in the same ZIP, if the ZIP agrees). For one item the expected number of such
    # namesakes in the master file is about n_master * 2^-(name + DOB + address bits). Summed
    # over the items that rest on that evidence alone (at 5M x 1M, per-item odds of 1e-4 still
    # made 3 wrong identifications), it must stay below 2^-margin, so each such item needs
    # log2(n_master) + log2(n_unsupported) + namesake_margin_bits (a Bonferroni bound over the
    # items actually at risk; every absent person the request asks about is among them).
    n_master = st.scalar("SELECT count(*) FROM m")
    n_unsupported = st.scalar(
        f"""SELECT count(*) FROM gated2 g
            WHERE g.record_id IS NOT NULL AND g.probability >= {double(t.review_probability)}
              AND NOT g.tin_agrees AND NOT g.addr_on_record"""
    )
    bits = math.log2(max(n_master, 2)) + math.log2(max(n_unsupported, 2)) + t.namesake_margin_bits
    return on_grid(bits)


def step_gated3(st: Steps, t: Thresholds, namesake_bits: float) -> None:
    """Whether one contradicting field is outweighed; the gate's verdict and conflicts."""
    st.table(
        "gated3",
        f"""WITH x AS (
          SELECT *,
            -- One contradicting field is outweighed when the two others agree and the
            -- household does too. A first name that differs (people go by a middle name, lists
            -- replace names) needs the TIN and the date of birth exact and the surname or the
            -- house. A date of birth that differs needs the TIN exact, first name, surname and
            -- house, less than a generation between the dates (a Jr/Sr with the other's TIN on
            -- the list) and no namesake at the house.
            -- Nothing is outweighed against a middle name that says another person.
            person_agree >= 2 AND person_conflict = 1 AND NOT middle_conflict
              AND CASE WHEN dob_conflict
                       THEN tin_exact AND first_ok AND last_agrees
                            AND (addr_on_record OR same_house) AND NOT hh_generational
                            AND abs(year(try_cast(r_dob AS DATE))
                                    - year(try_cast(m_dob AS DATE))) < {double(t.generation_years)}
                       -- a TIN that is another filer's is most often a household member's:
                       -- it is outweighed only for a record that lives with no one of its
                       -- surname; a TIN that is nobody's (an old ITIN, a mistyped number)
                       -- only where no twin lives
                       WHEN tin_differs
                       THEN (CASE WHEN tin_elsewhere THEN NOT hh_any ELSE NOT hh_twin END)
                            AND first_ok AND (dob_exact OR dob_near) AND last_agrees
                            AND (addr_on_record OR same_house
                                 -- no house to lean on: name and date of birth must carry
                                 -- the namesake bar with the conflicting TIN against them
                                 OR w_first + w_last + w_middle + w_dob
                                    + greatest(w_address, 0) + w_tin >= {double(namesake_bits)})
                       ELSE tin_exact AND dob_exact
                            AND (last_agrees OR addr_on_record OR same_house) END AS outweighed
          FROM gated2)
        SELECT *,
          (person_agree >= 2 AND (person_conflict = 0 OR outweighed)) AS person_ok,
          -- the TIN on the list is someone else's, and the rest does not outweigh it
          (tin_differs AND NOT outweighed) AS tin_conflict,
          -- the TIN is this record's, but name and date of birth say another person
          (tin_exact AND NOT (person_agree >= 2 AND (person_conflict = 0 OR outweighed))
           AND (first_conflict OR dob_conflict)) AS tin_name_conflict
        FROM x""",
    )


def step_flagged(st: Steps, namesake_bits: float) -> None:
    """The gate's inputs joined with the household and address checks, and the flags."""
    st.table(
        "flagged",
        f"""WITH f AS (
          SELECT g.*, coalesce(h.household, FALSE) AS household,
                 g.addr_on_record AS address_on_record,
                 coalesce(c.in_periods, FALSE) AS address_on_record_in_periods,
                 coalesce(g.tin_agrees OR g.addr_on_record, FALSE) AS supported,
                 g.w_first + g.w_last + g.w_middle + g.w_dob + greatest(g.w_address, 0)
                   AS name_dob_bits,
                 coalesce(NOT g.tin_agrees AND NOT g.addr_on_record
                          AND g.w_first + g.w_last + g.w_middle + g.w_dob
                              + greatest(g.w_address, 0) < {double(namesake_bits)},
                          FALSE)
                   AS namesake_risk,
                 coalesce(h.generational, FALSE) AS generational, coalesce(h.twin, FALSE) AS twin,
                 coalesce(g.person_ok AND NOT g.suffix_conflict, FALSE) AS gate
          FROM gated3 g LEFT JOIN household h USING (item_id)
          LEFT JOIN addr_check c USING (item_id)),
        v AS (
          SELECT f.*,
            list_filter([
              CASE WHEN person_conflict >= 2 THEN 'another_person' END,
            CASE WHEN suffix_conflict THEN 'suffix_conflict' END,
              CASE WHEN tin_conflict THEN 'tin_conflict' END,
              CASE WHEN tin_name_conflict THEN 'tin_name_conflict' END,
              CASE WHEN namesake_risk THEN 'namesake_risk' END,
              CASE WHEN household THEN 'household' END,
              CASE WHEN generational THEN 'generational' END,
              CASE WHEN twin THEN 'twin' END,
              CASE WHEN tin_one_edit THEN 'tin_typo' END,
              CASE WHEN tin_differs AND NOT tin_conflict THEN 'tin_differs' END,
              CASE WHEN itin_for_ssn THEN 'itin_for_ssn' END,
              CASE WHEN first_conflict AND gate THEN 'first_name_replaced' END,
              CASE WHEN dob_conflict AND gate THEN 'dob_replaced' END,
              CASE WHEN names_swapped THEN 'names_swapped' END,
              CASE WHEN r_dob IS NULL AND record_id IS NOT NULL THEN 'dob_missing' END
            ], lambda x: x IS NOT NULL) AS flags,
            coalesce(suffix_conflict OR tin_conflict OR tin_name_conflict OR namesake_risk,
                     FALSE) AS blocked,
            (r_first IS NOT NULL)::INT + (r_dob IS NOT NULL)::INT
              + (r_tin IS NOT NULL AND NOT itin_for_ssn)::INT AS identifiers
          FROM f)
        SELECT * FROM v""",
        reused=True,
    )


def step_linked(st: Steps, t: Thresholds, namesake_bits: float) -> None:
    """One row per item: its status, the evidence and the reasons."""
    st.table(
        "linked",
        f"""SELECT item_id,
          CASE WHEN record_id IS NULL THEN 'not_identified'
               WHEN probability >= {double(t.min_probability)}
                    AND margin_bits >= {double(t.min_margin_bits)} AND gate AND NOT blocked
                    THEN 'identified'
               -- two of first name, date of birth and TIN contradict: another person (a
               -- relative at the house), nothing an officer could resolve
               WHEN person_conflict >= 2 THEN 'not_identified'
               -- fewer than two of the person's own identifiers on the list: nothing in the
               -- master file tells them from a relative at the house (a Jr, a twin), so no
               -- officer could resolve it; it takes a date of birth or a TIN on the list
               WHEN identifiers < 2 THEN 'not_identified'
               WHEN probability >= {double(t.review_probability)} THEN 'review'
               ELSE 'not_identified' END AS status,
          record_id, probability, weight, runner_up_record_id, runner_up_probability,
          runner_up_weight, margin_bits, gate, blocked, flags,
          list_filter([
            CASE WHEN record_id IS NULL THEN 'no_candidate' END,
            CASE WHEN probability < {double(t.min_probability)} THEN 'low_probability' END,
            CASE WHEN margin_bits < {double(t.min_margin_bits)} THEN 'near_tie' END,
            CASE WHEN record_id IS NOT NULL AND NOT first_ok AND NOT gate THEN
                 (CASE WHEN first_uncorroborated THEN 'first_name_uncorroborated'
                       WHEN r_first IS NULL THEN 'first_name_missing'
                       ELSE 'first_name_differs' END) END,
            CASE WHEN record_id IS NOT NULL AND NOT dob_ok AND NOT gate THEN
                 (CASE WHEN r_dob IS NULL THEN 'dob_missing' ELSE 'dob_differs' END) END,
            CASE WHEN record_id IS NOT NULL AND NOT gate AND NOT tin_agrees
                      AND (r_tin IS NULL OR itin_for_ssn) THEN 'tin_missing' END,
            CASE WHEN person_conflict >= 2 THEN 'another_person' END,
            CASE WHEN record_id IS NOT NULL AND NOT gate AND identifiers < 2
                 THEN 'insufficient_identifiers' END,
            CASE WHEN suffix_conflict THEN 'suffix_conflict' END,
            CASE WHEN tin_conflict THEN 'tin_conflict' END,
            CASE WHEN tin_name_conflict THEN 'tin_name_conflict' END,
            CASE WHEN namesake_risk THEN 'namesake_risk' END
          ], lambda x: x IS NOT NULL) AS reasons,
          w_first, w_last, w_middle, w_dob, w_tin, w_address, address_on_record,
          address_on_record_in_periods, supported, name_dob_bits,
          {double(namesake_bits)} AS namesake_bits_required, person_agree,
          person_conflict
        FROM flagged""",
        reused=True,
    )


def _jw(a: str, b: str) -> str:
    """The Jaro–Winkler similarity of two columns on the grid (exact.py): a threshold compares
    the same bits on both engines."""
    return grid(f"jaro_winkler_similarity({a}, {b})")


def _is_itin(col: str) -> str:
    """An IRS Individual Taxpayer Identification Number: nine digits, a 9 first and the
    fourth and fifth in 50–65, 70–88, 90–92 or 94–99 (IRS, "ITIN guidance", Pub. 1915). An SSN
    never begins with 9."""
    mid = f"try_cast(substr({col}, 4, 2) AS INTEGER)"
    return (
        f"coalesce(length({col}) = 9 AND left({col}, 1) = '9' AND ({mid} BETWEEN 50 AND 65 "
        f"OR {mid} BETWEEN 70 AND 88 OR {mid} BETWEEN 90 AND 92 OR {mid} BETWEEN 94 AND 99), "
        "FALSE)"
    )


def soundex(col: str) -> str:
    """American Soundex as SQL over a standardized (upper-case letters) name. Hand-written
    because neither DuckDB nor Spark SQL has it as a portable function."""
    # Vowels (and Y) code 0 and separate; H and W are dropped and do not; then runs of the same
    # code collapse (the first letter's own code included), zeros go, the letter leads.
    codes = f"translate({col}, 'AEIOUYHWBFPVCGJKQSXZDTLMNR', '000000..111122222222334556')"
    collapsed = f"replace({codes}, '.', '')"
    for d in "0123456":
        collapsed = f"regexp_replace({collapsed}, '{d}{d}+', '{d}', 'g')"
    return f"left(left({col}, 1) || replace(substr({collapsed}, 2), '0', '') || '000', 4)"


def step_cand_addr(st: Steps) -> None:
    """Every distinct address each item's candidate filed from, standardized once, with the
    list of years it was on the return (most people file from one address year after year)."""
    cols = std.address_columns("x.")
    std_select = ", ".join(f"{sql} AS {name}" for name, sql in cols.items())
    st.table(
        "cand_addr",
        f"""WITH x AS (
          SELECT record_id, street, unit, city, state, zip, list(tax_year) AS years
          FROM addresses
          WHERE record_id IN (SELECT record_id FROM evidence WHERE record_id IS NOT NULL)
          GROUP BY record_id, street, unit, city, state, zip),
        s AS (SELECT record_id, years, {std_select} FROM x)
        SELECT l.item_id, s.years, {", ".join(f"s.{c}" for c in cols)}
        FROM evidence l JOIN s ON s.record_id = l.record_id""",
    )


def step_addr_check(st: Steps, envelope_periods: list[int], own_periods: bool) -> None:
    """Table `addr_check`: `any_year` and `in_periods` for every item with a candidate: the
    supplied address, standardized, against every address the candidate filed from, with the
    tolerance of `standardize.ADDRESS_MATCH_SQL`. The periods are the item's own
    `taxable_periods` (``;``-separated) or else the envelope's."""
    years = "[" + ", ".join(str(int(y)) for y in envelope_periods) + "]::BIGINT[]"
    own = (
        "list_filter(list_transform(string_split(nullif(trim(taxable_periods), ''), ';'), "
        "lambda x: try_cast(trim(x) AS BIGINT)), lambda x: x IS NOT NULL)"
        if own_periods
        else "NULL::BIGINT[]"
    )
    st.table(
        "addr_check",
        f"""WITH p AS (SELECT item_id, coalesce(nullif({own}, []::BIGINT[]), {years}) AS years
                   FROM items)
        SELECT a.uid AS item_id,
          bool_or({std.ADDRESS_MATCH_SQL}) AS any_year,
          bool_or({std.ADDRESS_MATCH_SQL} AND len(list_intersect(p.years, b.years)) > 0)
            AS in_periods
        FROM (SELECT uid, city AS std_city, state AS std_state, zip5 AS std_zip5,
                     house AS std_house, street AS std_street_name, unit AS std_unit_id,
                     po_box AS std_po_box
              FROM r) a
        JOIN cand_addr b ON b.item_id = a.uid
        LEFT JOIN p ON p.item_id = a.uid
        GROUP BY a.uid""",
        reused=True,
    )
