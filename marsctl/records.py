"""Records: the one way in and out. Preference rows of any format and shape are read as flat prompt/chosen/rejected
records (:func:`iter_pairs`, :func:`read_pairs`), and records are written in the format the output's extension
names (:func:`record_writer`, :func:`write_records`); also the record schema's ids, score fields and hashes.

Below it: the formats (:mod:`marsctl.formats` reads, :mod:`marsctl.writers` and :mod:`marsctl.jsonio` write), the
row shapes (:mod:`marsctl.shapes` reads, :mod:`marsctl.layouts` writes back), and where and how an output is
written (:mod:`marsctl.outputs`, :mod:`marsctl.atomic`).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from marsctl.atomic import deliver, held_output, scratch_file, write_failed, write_stdout
from marsctl.errors import DataError
from marsctl.jsonio import check_values, dump_line, strip_private
from marsctl.layouts import restore
from marsctl.outputs import output_format
from marsctl.shapes import CONSUMED, HH_SPLIT, SOURCE, content_id, parse
from marsctl.stats import sigmoid
from marsctl.writers import CsvBuilder, ParquetBuilder, compressor

__all__ = ["HH_SPLIT", "REQUIRED", "SCORE_FIELDS", "content_id", "dumps", "iter_pairs", "normalize_row", "read_pairs",
           "record_writer", "write_records"]

REQUIRED = ("prompt", "chosen", "rejected")
SCORE_FIELDS = ("score_chosen", "score_rejected", "pred_margin", "p_chosen")


def normalize_rows(row: Any, where: str, *, checked: bool = False,
                   shape: str | None = None) -> tuple[str, list[dict[str, Any]]]:
    """Validate one parsed row (of ``shape``, or the detected one) and return (shape, flat records).

    A row is one record, except a RewardBench 2 / best-of-N row: one per chosen × rejected. Extra keys
    are kept. Every string (keys included, at any depth) must be valid Unicode, and values nest at most
    ``jsonio.MAX_DEPTH`` levels; ``checked=True`` skips that walk for values the reader has checked.
    """
    if not checked and isinstance(row, dict):
        check_values(row, where)
    name, pairs = parse(row, where, shape)
    consumed = CONSUMED.get(name, ())
    extras = [(k, v) for k, v in row.items() if k not in consumed]
    return name, [_finish(pair, row, extras, where) for pair in pairs]


def _finish(pair: dict[str, Any], row: dict[str, Any], extras: list[tuple[str, Any]], where: str) -> dict[str, Any]:
    """A parsed pair as a record: texts checked, an id (the row's or a content hash), extra keys kept."""
    prompt, chosen, rejected = pair["prompt"], pair["chosen"], pair["rejected"]
    for field, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            msg = f"{where}: field '{field}' is empty"
            raise DataError(msg)
    if "id" in pair:
        rid = pair["id"]
    elif "id" in row:
        rid = row["id"]
        if not isinstance(rid, str | int) or isinstance(rid, bool) or rid == "":
            msg = f"{where}: field 'id' must be a non-empty string or an integer"
            raise DataError(msg)
        rid = str(rid)
    else:
        rid = content_id(prompt, chosen, rejected)
    out = {"id": rid, "prompt": prompt, "chosen": chosen, "rejected": rejected}
    out.update((k, v) for k, v in pair.items() if k not in out)
    out.update((k, v) for k, v in extras if k not in out)
    return out


def normalize_row(row: Any, where: str, *, checked: bool = False) -> dict[str, Any]:
    """Validate one parsed row and return it as a flat ``prompt/chosen/rejected`` record (the first, for
    a best-of-N row); see :func:`normalize_rows`."""
    return normalize_rows(row, where, checked=checked)[1][0]


def iter_pairs(path: str | os.PathLike, *, allow_empty: bool = False, name: str | None = None,
               format: str | None = None, split: str | None = None,
               announce: bool = False) -> Iterator[dict[str, Any]]:
    """Read and validate preference pairs from any readable input (:func:`marsctl.formats.iter_rows`) one at a time.

    ``format`` forces a row shape (:data:`marsctl.shapes.SHAPES`; default: detect each row); ``split`` picks a
    split of a ``datasets`` folder or cached hub dataset. Ids must be unique. Every record carries ``_line``
    (its line or row number) for messages. Memory is bounded by the set of ids seen (the duplicate check),
    not by the records. ``name`` replaces the file's name in messages (a spooled copy of stdin reads as
    ``<stdin>``). ``announce`` writes one stderr line at the end: the shapes read and how many rows.
    """
    from marsctl.formats import iter_rows
    from marsctl.inputs import display_name
    from marsctl.shapes import check_shape_name

    shape = check_shape_name(format)
    seen: dict[str, int] = {}
    shapes: dict[str, int] = {}
    name = name or display_name(path)
    rows = 0
    ties: tuple[int, int] = (0, 0)  # (judged ties skipped, the first one's line)
    for lineno, value, shown, unit in iter_rows(path, split=split, name=name):
        name = shown
        where = f"{name} {unit} {lineno}"
        got, recs = normalize_rows(value, where, checked=True, shape=shape)
        rows += 1
        shapes[got] = shapes.get(got, 0) + 1
        ties = _count_tie(ties, recs, lineno)  # a judged tie reads as no pair
        for rec in recs:
            if rec["id"] in seen:
                msg = f"{where}: duplicate id {rec['id']!r} (first seen on {unit} {seen[rec['id']]})"
                raise DataError(msg, hint="ids must be unique; drop the 'id' field to get content hashes")
            seen[rec["id"]] = lineno
            rec["_line"] = lineno
            yield rec
    _say_ties(name, ties, bool(seen) or allow_empty)
    if not seen and not allow_empty:
        msg = f"{name}: no records (the file is empty)"
        raise DataError(msg)
    if announce and name not in _announced:  # said once per input (a command may read it twice)
        from marsctl import ui

        _announced.add(name)
        ui.note(shape_summary(name, rows, len(seen), shapes))  # said when the command speaks next


_announced: set[str] = set()


# -- ties of pairwise judgements (marsctl.judgements) are counted and skipped, said once
def _count_tie(ties: tuple[int, int], recs: list[dict[str, Any]], lineno: int) -> tuple[int, int]:
    return ties if recs else (ties[0] + 1, ties[1] or lineno)


def _say_ties(name: str, ties: tuple[int, int], any_pair: bool) -> None:
    if not ties[0]:
        return
    what = f"{ties[0]} tie{'s' * (ties[0] != 1)} (the first: row {ties[1]})"
    if not any_pair:
        msg = f"{name}: no records: every row is a tie ({what}), and a tie states no preference"
        raise DataError(msg)
    from marsctl import ui

    ui.note(f"{name}: skipped {what}: a tie states no preference to learn from")


def shape_summary(name: str, rows: int, pairs: int, shapes: dict[str, int]) -> str:
    """The one line saying what was read.

    >>> shape_summary("a.jsonl", 3, 3, {"trl": 3})
    'read 3 pairs from a.jsonl (shape: trl)'
    >>> shape_summary("b.parquet", 2, 6, {"rewardbench2": 1, "trl": 1})
    'read 6 pairs from 2 rows of b.parquet (shapes: rewardbench2 1 row, trl 1 row)'
    """
    if len(shapes) == 1:
        kinds = f"shape: {next(iter(shapes))}"
    else:
        kinds = "shapes: " + ", ".join(f"{k} {n} row{'s' * (n != 1)}" for k, n in sorted(shapes.items()))
    source = name if rows == pairs else f"{rows} rows of {name}"
    return f"read {pairs} pair{'s' * (pairs != 1)} from {source} ({kinds})"


def read_pairs(path: str | os.PathLike, *, allow_empty: bool = False, **options: Any) -> list[dict[str, Any]]:
    """Read and validate preference pairs from a file or ``-`` into a list (:func:`iter_pairs`; same options)."""
    return list(iter_pairs(path, allow_empty=allow_empty, **options))


# ------------------------------------------------------------------------------------------------ writing
_PIECE = 1 << 20  # characters of a held output copied to stdout at once


def dumps(rec: dict[str, Any]) -> str:
    """One record as a JSON line (no trailing newline); NaN and Infinity are refused, never written.

    A record read from conversational rows is written with its messages (:func:`marsctl.layouts.restore`).
    """
    return dump_line(restore(rec) if SOURCE in rec else rec)


def _row(rec: dict[str, Any], fmt: str) -> dict[str, Any]:
    """A record as a Parquet or CSV row: private keys dropped; Parquet gets conversational messages back (CSV cells
    hold the flat texts)."""
    return strip_private(restore(rec) if fmt == "parquet" else rec)


def write_records(records: Iterable[dict[str, Any]], path: str | os.PathLike) -> int:
    """Write records as JSONL to ``path`` (atomically) or to stdout for ``-``; return the count.

    Records are streamed (memory does not grow with their number); a bad record still leaves no
    partial output: a file is renamed into place at the end, and stdout, a device or a pipe gets the
    records only once all were encoded (spooled to ``$TMPDIR`` meanwhile). A file named ``.parquet``,
    ``.csv``, ``.jsonl.gz`` or ``.jsonl.zst`` is written in that format (:func:`record_writer`).
    """
    n = 0
    with record_writer(path, hold=True) as write:
        for r in records:
            write(r)
            n += 1
    return n


@contextlib.contextmanager
def record_writer(path: str | os.PathLike, *, hold: bool = False) -> Iterator[Callable[[dict[str, Any]], None]]:
    """Stream records to ``path`` (atomically: nothing is left there when the block raises) or to stdout for ``-``.

    Yields ``write(record)``. The format is the one ``path``'s extension names (:func:`marsctl.outputs.output_format`):
    JSONL, gzip/zstd JSONL, Parquet or CSV. Memory stays flat whatever the number of records. A regular file is
    built in a temporary beside it and renamed into place at the end. On stdout each record is written as it
    comes, so a caller that must not leave partial output on bad input checks its input before the first write,
    or passes ``hold``: then stdout (or a device or pipe other than ``/dev/null``) gets the records only when the
    block ends without an error, from a temporary file in ``$TMPDIR``. A device, pipe or ``/dev/stdout`` is
    written in place, never replaced; Parquet and CSV are always built in a temporary file first (in ``$TMPDIR``
    for a device or pipe) and copied into it when complete.
    """
    if str(path) == "-":
        if hold:
            with _held(path) as write:
                yield write
        else:
            yield lambda rec: write_stdout(dumps(rec) + "\n")
        return
    fmt = output_format(path)
    if fmt in ("parquet", "csv"):
        builder: Any = (ParquetBuilder if fmt == "parquet" else CsvBuilder)(lambda: scratch_file(path))
        try:
            yield lambda rec: builder.add(_row(rec, fmt))
            final = builder.finish()
        except BaseException as e:
            builder.abort()
            if isinstance(e, OSError):
                raise write_failed(path, e) from None
            raise
        deliver(final, path)
        return
    with held_output(path, hold) as fh, compressor(fmt, fh) as put:
        yield lambda rec: put((dumps(rec) + "\n").encode("utf-8"))


@contextlib.contextmanager
def _held(path: str | os.PathLike) -> Iterator[Callable[[dict[str, Any]], None]]:
    """``write(record)`` into a temporary file, copied to stdout at the end (devices and pipes:
    :func:`marsctl.atomic.held_output`)."""
    import tempfile

    try:
        spool = tempfile.TemporaryFile("w+", encoding="utf-8", prefix="marsctl-out-")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise write_failed("a temporary copy of the output", e) from None
    with spool:

        def write(rec: dict[str, Any]) -> None:
            line = dumps(rec) + "\n"
            try:
                spool.write(line)
            except OSError as e:
                raise write_failed("a temporary copy of the output", e) from None

        yield write
        try:
            spool.seek(0)
        except OSError as e:
            raise write_failed("a temporary copy of the output", e) from None
        while piece := spool.read(_PIECE):
            write_stdout(piece)


INPUT_PREFIX = "input_"  # where a score field the input already held is kept: score_chosen -> input_score_chosen
_told: set[str] = set()  # the never-clobber notes already given in this process (each is said once)


def is_own_scores(rec: dict[str, Any]) -> bool:
    """Whether a row's score fields are marsctl's own (from an earlier ``score``): all four present and consistent.

    >>> is_own_scores({"score_chosen": 0.5, "score_rejected": 0.25, "pred_margin": 0.25, "p_chosen": 0.562177})
    True
    >>> is_own_scores({"score_chosen": 8.0, "score_rejected": 3.0})
    False
    """

    try:
        c, r, m, p = (float(rec[k]) for k in SCORE_FIELDS)
    except (KeyError, TypeError, ValueError):
        return False
    return abs(c - r - m) <= 2e-6 and abs(sigmoid(m) - p) <= 2e-6


def with_scores(rec: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``rec`` with the score ``fields``; never overwrites a value the user had.

    A score field the input already holds (UltraFeedback's ``score_chosen``) is kept as ``input_<field>``,
    said once on stderr. Rows that hold marsctl's own consistent scores (:func:`is_own_scores`: re-scoring
    a scored file) get the new scores in their place, also said once. An ``input_<field>`` that exists
    already with a different value is a DataError.
    """
    clash = [k for k in fields if k in rec]
    if not clash:
        return {**rec, **fields}
    from marsctl import ui

    where = f"line {rec['_line']}" if "_line" in rec else f"record {rec.get('id', '?')!r}"
    if is_own_scores(rec):
        if "own" not in _told:
            _told.add("own")
            ui.info(f"re-scoring rows that marsctl scored before (first at {where}): their {', '.join(clash)} "
                    "are replaced by this model's")
        return {**rec, **fields}
    out = dict(rec)
    for k in clash:
        kept = INPUT_PREFIX + k
        if kept in out and out[kept] != out[k]:
            msg = f"{where}: the input holds both '{k}' and '{kept}'; scoring would overwrite one of them"
            raise DataError(msg, hint=f"rename '{k}' in the input (marsctl writes its own '{k}')")
        out[kept] = out.pop(k)
    if "input" not in _told:
        _told.add("input")
        ui.warn(f"the input already holds {', '.join(clash)} (first at {where}): kept as "
                f"{', '.join(INPUT_PREFIX + k for k in clash)}; {', '.join(clash)} now hold this model's scores")
    out.update(fields)
    return out


def require_fields(records: list[dict[str, Any]], fields: Iterable[str], name: str, why: str) -> None:
    """Raise a DataError naming the first record that lacks one of ``fields``."""
    for rec in records:
        for field in fields:
            if field not in rec:
                line = rec.get("_line", "?")
                msg = f"{name} line {line}: missing field '{field}' ({why})"
                raise DataError(msg)


def records_sha256(records: Iterable[dict[str, Any]]) -> str:
    """The sha256 of records as marsctl would write them (order matters)."""
    h = hashlib.sha256()
    for r in records:
        h.update((dumps(r) + "\n").encode("utf-8"))
    return h.hexdigest()


def is_identical(rec: dict[str, Any]) -> bool:
    """Whether a pair's chosen and rejected are the same text once runs of whitespace are collapsed."""
    if "_identical" in rec:  # a slim row (lengths.slim_row): its texts were compared before they were dropped
        return bool(rec["_identical"])
    chosen, rejected = rec.get("chosen"), rec.get("rejected")
    return isinstance(chosen, str) and isinstance(rejected, str) and chosen.split() == rejected.split()


def count_identical(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Pairs with chosen == rejected (they carry no preference): ``{"n": count, "first_line": line or None}``.

    The line is the record's ``_line`` (set by :func:`read_pairs`), else its 1-based position.

    >>> count_identical([{"chosen": "a", "rejected": "b"}, {"chosen": "a  b", "rejected": " a b", "_line": 7}])
    {'n': 1, 'first_line': 7}
    """
    n, first = 0, None
    for i, rec in enumerate(records):
        if is_identical(rec):
            n += 1
            if first is None:
                first = rec.get("_line", i + 1)
    return {"n": n, "first_line": first}
