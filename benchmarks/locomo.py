"""LoCoMo evidence recall@10: flat exact search vs tiered search after the lifecycle.

Data: LoCoMo (Maharana et al., "Evaluating Very Long-Term Conversational
Memory of LLM Agents", ACL 2024; CC BY-NC 4.0, evaluation only). It is not
in this repo: fetch ``data/locomo10.json`` from ``snap-research/locomo`` and
pass it with ``--data`` (default ``../shared/data/locomo/locomo-dev.json``,
seven of its ten conversations). A missing file is a skip (exit 0).

Memories: each turn (dia_id such as ``D3:7``) is one episodic memory, text
``"{speaker}: {text}"`` -- the speaker name is part of what a question asks
about ("When did Caroline ..."), so it belongs in the embedded text; image
captions (``blip_caption``) are left out. Namespace ``locomo:{sample_id}``;
``created_at`` = the session's ``date_time`` (e.g. "1:56 pm on 8 May, 2023",
read as UTC) plus 10 s per turn index, so turns are strictly ordered;
metadata ``{"dia_id": ...}``.

Questions: ``qa`` items of category 1-5 (1 multi-hop, 2 temporal,
3 open-domain, 4 single-hop; 5 adversarial, reported separately). Evidence
ids are split on ``[;\\s]+``, leading zeros stripped (``D30:05`` -> ``D30:5``),
and ids matching no turn dropped; a question left with no evidence is not
scored (counted under ``no_evidence``).

Embeddings: all-MiniLM-L6-v2 (`tiermem.MiniLMEmbedder`) for turns and
questions, cached in ``benchmarks/.cache/locomo-<sha256(data + model)>.npz``;
vectors are passed to tiermem (``embedding=``) and searches use vectors.

Metric: evidence recall@10 -- the share of a question's evidence turns
among the 10 retrieved memories; a consolidated (semantic) memory counts for
every turn in its ``source_ids``. Averaged over questions, per category.

Settings (k=10, same vectors):

a. **flat**: numpy exact cosine over every turn of the conversation (the limit).
b. **tiered**: per conversation (each has its own timeline: they span
   2022-2023), a fresh ``tiermem.open(tmp, policy="default", clock=...)``
   with L1 on the shared Redis (unique prefix, removed at the end). Its turns
   are written with ``add_many`` (batches of 500) at their ``created_at``,
   the clock is then moved to 2 days after its last session and the
   lifecycle of the shipped default policy runs: ``consolidate``, then ``demote`` twice (the first
   pass moves idle episodes L1 -> L2 (idle 1h), the second L2 -> L3 those
   idle 30 days or more) -- the store as a running scheduler would have left
   it by then. ``mem.search(qvec, namespace=ns, k=10)``: L1+L2, and L3 when
   they return fewer than k hits or their k-th best score is below
   ``search.deep_below``.
c. **deep**: the same store, ``deep=True`` (every tier).

For b the report also says, per missed evidence turn, which tier held it
(or its consolidated memory) and how many searches consulted L3 (computed
exactly from the hot+warm vectors against ``search.deep_below``).

    python -m benchmarks run quality            # full: 7 conversations
    python -m benchmarks run quality --quick    # 1 conversation, 50 questions
    python -m benchmarks.locomo [--quick] [--data FILE]   # standalone
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "data" / "locomo" / "locomo-dev.json"
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
MODEL = "all-MiniLM-L6-v2"
K = 10
TURN_STEP = timedelta(seconds=10)
CATS = {1: "multi-hop", 2: "temporal", 3: "open-domain", 4: "single-hop", 5: "adversarial"}
SETTINGS = ("flat", "tiered", "deep")
REDIS_URL = os.environ.get("TIERMEM_BENCH_REDIS", "redis://127.0.0.1:6379/0")
CREDIT = (
    "Data: LoCoMo (Maharana et al., ACL 2024), snap-research/locomo, "
    "CC BY-NC 4.0 -- used for evaluation only, not redistributed."
)
_EVID = re.compile(r"[;\s]+")
_DIA = re.compile(r"^D0*(\d+):0*(\d+)$")


@dataclass
class Turn:
    dia_id: str
    text: str
    created_at: datetime


@dataclass
class Question:
    text: str
    category: int
    evidence: list[str]


@dataclass
class Conv:
    sample_id: str
    turns: list[Turn] = field(default_factory=list)
    questions: list[Question] = field(default_factory=list)
    no_evidence: int = 0

    @property
    def namespace(self) -> str:
        return f"locomo:{self.sample_id}"


def norm_dia(raw: str) -> str | None:
    """``D30:05`` -> ``D30:5``; None if it is not a dia id at all."""
    m = _DIA.match(raw.strip())
    return f"D{int(m.group(1))}:{int(m.group(2))}" if m else None


def parse_when(s: str) -> datetime:
    """ "1:56 pm on 8 May, 2023" -> an aware UTC datetime."""
    return datetime.strptime(s.strip(), "%I:%M %p on %d %B, %Y").replace(tzinfo=UTC)


def load(path: Path) -> list[Conv]:
    convs = []
    for item in json.loads(path.read_text()):
        conv = Conv(sample_id=item["sample_id"])
        c = item["conversation"]
        sessions = sorted(
            (int(k.split("_")[1]), k)
            for k, v in c.items()
            if re.fullmatch(r"session_\d+", k) and isinstance(v, list)
        )
        for _, key in sessions:
            start = parse_when(c[f"{key}_date_time"])
            for i, t in enumerate(c[key]):
                dia = norm_dia(t["dia_id"]) or t["dia_id"]
                conv.turns.append(Turn(dia, f"{t['speaker']}: {t['text']}", start + i * TURN_STEP))
        known = {t.dia_id for t in conv.turns}
        for qa in item["qa"]:
            cat = int(qa.get("category", 0))
            if cat not in CATS:
                continue
            ev: list[str] = []
            for raw in qa.get("evidence", []):
                for part in _EVID.split(str(raw)):
                    d = norm_dia(part) if part else None
                    if d in known and d not in ev:
                        ev.append(d)
            if not ev:
                conv.no_evidence += 1
                continue
            conv.questions.append(Question(qa["question"], cat, ev))
        convs.append(conv)
    return convs


def embed_all(convs: list[Conv], data_sha: str) -> dict[str, np.ndarray]:
    """Per conversation: turn and question vectors, from the cache or MiniLM."""
    key = hashlib.sha256(f"{data_sha}|{MODEL}|speaker: text|v1".encode()).hexdigest()[:16]
    path = CACHE / f"locomo-{key}.npz"
    if path.exists():
        with np.load(path) as z:
            cached = {k: z[k] for k in z.files}
        if all(f"{c.sample_id}/turns" in cached for c in convs):
            return cached
    import tiermem

    model = tiermem.MiniLMEmbedder()
    out: dict[str, np.ndarray] = {}
    for c in convs:
        out[f"{c.sample_id}/turns"] = model.embed([t.text for t in c.turns])
        out[f"{c.sample_id}/questions"] = model.embed([q.text for q in c.questions])
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)  # type: ignore[arg-type]  # numpy's stub: allow_pickle
    return out


class CachedEmbedder:
    """MiniLM-compatible (384-d); only loads the model if the engine asks for text."""

    dim = 384

    def __init__(self) -> None:
        self._model: Any = None
        self.calls = 0

    def embed(self, texts: list[str]) -> np.ndarray:
        import tiermem

        self.calls += 1
        if self._model is None:
            self._model = tiermem.MiniLMEmbedder()
        out: np.ndarray = self._model.embed(texts)
        return out


class Clock:
    def __init__(self, t: datetime) -> None:
        self.t = t

    def __call__(self) -> datetime:
        return self.t


def recall(evidence: list[str], covered: set[str]) -> float:
    return sum(d in covered for d in evidence) / len(evidence)


def score_hits(hits: list[Any], id2dia: dict[str, str]) -> set[str]:
    """dia_ids covered by the hits (a consolidated memory covers its sources)."""
    out: set[str] = set()
    for h in hits:
        m = h.memory
        if m.source_ids:
            out.update(id2dia[s] for s in m.source_ids if s in id2dia)
        elif m.id in id2dia:
            out.add(id2dia[m.id])
    return out


def run_flat(
    convs: list[Conv], vecs: dict[str, np.ndarray]
) -> tuple[dict[tuple[str, int], set[str]], float]:
    per: dict[tuple[str, int], set[str]] = {}
    t0 = time.perf_counter()
    for c in convs:
        tv, qv = vecs[f"{c.sample_id}/turns"], vecs[f"{c.sample_id}/questions"]
        sims = qv @ tv.T
        top = np.argsort(-sims, axis=1)[:, :K]
        for qi in range(len(c.questions)):
            per[(c.sample_id, qi)] = {c.turns[j].dia_id for j in top[qi]}
    return per, time.perf_counter() - t0


def run_tiered(convs: list[Conv], vecs: dict[str, np.ndarray]) -> dict[str, Any]:
    """One fresh store per conversation (each has its own timeline); merged info."""
    info: dict[str, Any] = {}
    merged: dict[str, Any] = {"per": {"tiered": {}, "deep": {}}, "where": {}, "conversations": {}}
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    secs: Counter[str] = Counter()
    for c in convs:
        one = run_tiered_one(c, vecs)
        one_per = one.pop("per")
        for s in ("tiered", "deep"):
            merged["per"][s].update(one_per[s])
        merged["where"].update(one.pop("where"))
        secs.update(one.pop("seconds"))
        for key in ("tiers", "kinds", "tier_kind"):
            totals[key].update(one[key])
        for s, cnt in one["hit_tiers"].items():
            totals[f"hit_tiers/{s}"].update(cnt)
        for key in ("ingest_seconds", "lifecycle_seconds", "memories_before", "memories_after",
                    "semantic_created", "episodes_consolidated", "searches_reading_l3_default",
                    "embedder_calls", "redis_keys_left_before_cleanup"):  # fmt: skip
            info[key] = info.get(key, 0) + one[key]
        for j in one["lifecycle"]:
            totals[f"job/{j['job']}"].update({"moved": j["moved"], "merged": j["merged"]})
        merged["conversations"][c.sample_id] = one
    info["lifecycle"] = [
        {"job": job, **dict(totals[f"job/{job}"])} for job in ("consolidate", "demote")
    ]
    info["tiers"] = dict(sorted(totals["tiers"].items()))
    info["kinds"] = dict(sorted(totals["kinds"].items()))
    info["tier_kind"] = dict(sorted(totals["tier_kind"].items()))
    info["hit_tiers"] = {
        s: dict(sorted(totals[f"hit_tiers/{s}"].items())) for s in ("tiered", "deep")
    }
    info["deep_below"] = next(iter(merged["conversations"].values()))["deep_below"]
    info["per_conversation"] = merged["conversations"]
    info["per"] = merged["per"]
    info["where"] = merged["where"]
    info["seconds"] = dict(secs)
    return info


def run_tiered_one(c: Conv, vecs: dict[str, np.ndarray]) -> dict[str, Any]:
    import redis

    import tiermem

    prefix = f"bench-locomo-{uuid.uuid4().hex[:8]}"
    first = min(t.created_at for t in c.turns)
    last = max(t.created_at for t in c.turns)
    clock = Clock(first)
    emb = CachedEmbedder()
    info: dict[str, Any] = {"l1_prefix": prefix}
    overrides: dict[str, Any] = {"l1.url": REDIS_URL, "l1.prefix": prefix, "embedding.dim": 384}
    tmp = tempfile.TemporaryDirectory(prefix="tiermem-locomo-")
    mem = tiermem.open(
        tmp.name,
        policy="default",
        clock=clock,
        embedder=emb,
        **overrides,
    )
    try:
        deep_below = mem.config.search.deep_below
        id2dia: dict[str, str] = {}
        t0 = time.perf_counter()
        tv = vecs[f"{c.sample_id}/turns"]
        items = [
            {
                "text": t.text,
                "namespace": c.namespace,
                "embedding": tv[i],
                "created_at": t.created_at,
                "metadata": {"dia_id": t.dia_id},
            }
            for i, t in enumerate(c.turns)
        ]
        for s in range(0, len(items), 500):
            batch = items[s : s + 500]
            clock.t = max(it["created_at"] for it in batch)
            res = mem.add_many(batch)
            if not res.ok:
                raise RuntimeError(f"add_many failed: {list(res.errors.items())[:3]}")
            for it, mid in zip(batch, res.ids, strict=True):
                assert mid is not None  # res.ok: every item has an id
                id2dia[mid] = it["metadata"]["dia_id"]
        info["ingest_seconds"] = time.perf_counter() - t0
        info["memories_before"] = len(id2dia)

        # the lifecycle of the default policy, as seen 2 days after the last session
        clock.t = last + timedelta(days=2)
        info["lifecycle_now"] = clock.t.isoformat()
        t0 = time.perf_counter()
        jobs = []
        for job in ("consolidate", "demote", "demote"):
            r = mem.run(job)
            jobs.append(
                {"job": job, "moved": r.moved, "merged": r.merged, "deleted": r.deleted,
                 "seconds": round(r.seconds, 3), "errors": r.errors[:3], "notes": r.notes[:3]}
            )  # fmt: skip
        info["lifecycle"] = jobs
        info["lifecycle_seconds"] = time.perf_counter() - t0

        # where everything sits now
        where: dict[str, tuple[str, str | None]] = {}  # "sample/dia": (tier, consolidated_into)
        tiers: Counter[str] = Counter()
        kinds: Counter[str] = Counter()
        tier_kind: Counter[str] = Counter()
        hw = []
        for m in mem.scan(namespace=c.namespace):
            tiers[m.tier] += 1
            kinds[m.kind] += 1
            tier_kind[f"{m.tier}/{m.kind}"] += 1
            if m.tier in ("l1", "l2"):
                hw.append(np.asarray(m.embedding, dtype=np.float32))
            if m.id in id2dia:
                where[f"{c.sample_id}/{id2dia[m.id]}"] = (
                    m.tier, m.metadata.get("consolidated_into")
                )  # fmt: skip
        hotwarm = np.stack(hw) if hw else np.zeros((0, 384), np.float32)
        info["tiers"] = dict(sorted(tiers.items()))
        info["kinds"] = dict(sorted(kinds.items()))
        info["tier_kind"] = dict(sorted(tier_kind.items()))
        info["memories_after"] = sum(tiers.values())
        info["semantic_created"] = kinds.get("semantic", 0)
        info["episodes_consolidated"] = sum(1 for v in where.values() if v[1])
        info["deep_below"] = deep_below

        per: dict[str, dict[tuple[str, int], set[str]]] = {"tiered": {}, "deep": {}}
        hit_tiers: dict[str, Counter[str]] = {"tiered": Counter(), "deep": Counter()}
        secs = {}
        qv = vecs[f"{c.sample_id}/questions"]
        for setting, deep in (("tiered", False), ("deep", True)):
            t0 = time.perf_counter()
            for qi in range(len(c.questions)):
                hits = mem.search(qv[qi], namespace=c.namespace, k=K, deep=deep)
                hit_tiers[setting].update(h.tier for h in hits)
                per[setting][(c.sample_id, qi)] = score_hits(hits, id2dia)
            secs[setting] = time.perf_counter() - t0
        l3_read = 0
        for qi in range(len(c.questions)):
            sc = hotwarm @ qv[qi] if len(hotwarm) else np.zeros(0)
            if len(sc) < K or float(np.sort(sc)[-K]) < deep_below:  # the k-th best decides
                l3_read += 1
        info["searches_reading_l3_default"] = l3_read
        info["hit_tiers"] = {k: dict(sorted(v.items())) for k, v in hit_tiers.items()}
        info["embedder_calls"] = emb.calls
        info["where"] = where
        info["per"] = per
        info["seconds"] = secs
    finally:
        try:
            mem.forget(namespace=c.namespace)
        finally:
            mem.close()
            client = redis.Redis.from_url(REDIS_URL)
            left = list(client.scan_iter(match=f"{prefix}*", count=1000))
            for i in range(0, len(left), 500):
                client.delete(*left[i : i + 500])
            info["redis_keys_left_before_cleanup"] = len(left)
            tmp.cleanup()
    return info


def summarise(
    convs: list[Conv], per: dict[str, dict[Any, Any]], where: dict[str, Any]
) -> dict[str, Any]:
    rows: dict[str, dict[str, Any]] = {}
    sums: dict[str, dict[str, list[float]]] = {s: defaultdict(list) for s in SETTINGS}
    missed_tier: dict[str, Counter[str]] = {"tiered": Counter(), "deep": Counter()}
    for c in convs:
        for qi, q in enumerate(c.questions):
            for s in SETTINGS:
                covered = per[s][(c.sample_id, qi)]
                r = recall(q.evidence, covered)
                sums[s][str(q.category)].append(r)
                if q.category != 5:
                    sums[s]["1-4"].append(r)
                if s != "flat" and q.category != 5:
                    for d in q.evidence:
                        if d not in covered:
                            tier, into = where[f"{c.sample_id}/{d}"]
                            missed_tier[s][f"{tier}{'/consolidated' if into else ''}"] += 1
    for cat in [*map(str, CATS), "1-4"]:
        row: dict[str, Any] = {"n": len(sums["flat"][cat])}
        for s in SETTINGS:
            vals = sums[s][cat]
            row[s] = round(float(np.mean(vals)), 4) if vals else None
        rows[cat] = row
    return {"rows": rows, "missed_evidence_tier": {k: dict(v) for k, v in missed_tier.items()}}


def flat_missed_overlap(
    convs: list[Conv], per: dict[str, dict[Any, Any]], where: dict[str, Any]
) -> dict[str, dict[str, int]]:
    """Evidence turns (cat 1-4) found by flat but missed by a setting, by their tier."""
    out: dict[str, dict[str, int]] = {}
    for s in ("tiered", "deep"):
        n: Counter[str] = Counter()
        for c in convs:
            for qi, q in enumerate(c.questions):
                if q.category == 5:
                    continue
                f, t = per["flat"][(c.sample_id, qi)], per[s][(c.sample_id, qi)]
                for d in q.evidence:
                    if d in f and d not in t:
                        n[where[f"{c.sample_id}/{d}"][0]] += 1
        out[s] = dict(n)
    return out


def evidence_tiers(convs: list[Conv], where: dict[str, Any]) -> dict[str, int]:
    """Where the evidence turns of categories 1-4 sit after the lifecycle."""
    n: Counter[str] = Counter()
    for c in convs:
        for q in c.questions:
            if q.category != 5:
                n.update(where[f"{c.sample_id}/{d}"][0] for d in q.evidence)
    return dict(sorted(n.items()))


def markdown(res: dict[str, Any]) -> str:
    r, info = res["summary"]["rows"], res["tiered_store"]
    lines = [
        "# LoCoMo evidence recall@10: flat vs tiered (default policy)",
        "",
        f"`{res['command']}` -- {res['conversations']} conversations, "
        f"{res['turns']} turns, {res['questions']} questions "
        f"({res['no_evidence']} without a valid evidence id not scored); "
        f"embedder {MODEL} (384-d); k={K}.",
        "",
        "| category | n | flat | tiered default | tiered deep |",
        "|---|---:|---:|---:|---:|",
    ]
    for cat in ["1", "2", "3", "4", "1-4", "5"]:
        row = r[cat]
        name = "**1-4 overall**" if cat == "1-4" else f"{cat} {CATS[int(cat)]}"
        if cat == "5":
            name += " (separate)"
        vals = " | ".join("-" if row[s] is None else f"{row[s]:.3f}" for s in SETTINGS)
        lines.append(f"| {name} | {row['n']} | {vals} |")
    lines += [
        "",
        f"Ratio (categories 1-4): tiered default / flat = {res['ratio_tiered_flat']:.3f}, "
        f"deep / flat = {res['ratio_deep_flat']:.3f}.",
        "",
        "Seconds (all questions): "
        + ", ".join(f"{s} {res['seconds'][s]:.2f}" for s in SETTINGS)
        + f"; ingest {info['ingest_seconds']:.1f}, lifecycle {info['lifecycle_seconds']:.1f}.",
        "",
        "## Store after the lifecycle (per conversation: clock = its last session + 2 days)",
        "",
        f"- memories before: {info['memories_before']} episodes; after: "
        f"{info['memories_after']} ({info['semantic_created']} semantic created by "
        f"consolidation, {info['episodes_consolidated']} episodes consolidated into them "
        f"and moved to L3)",
        f"- tiers: {info['tiers']}; by tier/kind: {info['tier_kind']}",
        "- jobs (summed over conversations and passes): "
        + "; ".join(
            f"{j['job']} moved {j['moved']} merged {j['merged']}" for j in info["lifecycle"]
        ),
        f"- default searches that read L3 (hot+warm < k or k-th best < deep_below="
        f"{info['deep_below']}): {info['searches_reading_l3_default']} of {res['questions']}",
        f"- hit tiers: {info['hit_tiers']}",
        f"- missed evidence turns (cat 1-4) by the tier holding them: "
        f"{res['summary']['missed_evidence_tier']}",
        f"- evidence turns (cat 1-4) by tier: {res['evidence_tiers']}",
        "- evidence turns flat found but the setting missed, by tier: "
        f"{res['flat_found_setting_missed']}",
        "",
        'Text of a memory: `"{speaker}: {text}"`; created_at = session date_time (UTC) '
        "+ 10 s per turn; lifecycle: consolidate, demote, demote.",
        "",
        CREDIT,
        "",
    ]
    return "\n".join(lines)


def run(quick: bool, out: Path | None = None, data: Path = DEFAULT_DATA) -> dict[str, Any]:
    """The quality suite; writes locomo.md into `out` on full runs. FileNotFoundError: no data."""
    if not data.exists():
        raise FileNotFoundError(f"data file {data} not found (see benchmarks/locomo.py)")
    raw = data.read_bytes()
    data_sha = hashlib.sha256(raw).hexdigest()
    convs = load(data)
    no_ev = sum(c.no_evidence for c in convs)
    if quick:
        convs = convs[:1]
        convs[0].questions = convs[0].questions[:50]
    t0 = time.perf_counter()
    vecs = embed_all(convs, data_sha)
    embed_s = time.perf_counter() - t0

    per_flat, flat_s = run_flat(convs, vecs)
    info = run_tiered(convs, vecs)
    per = {"flat": per_flat, **info.pop("per")}
    where = info.pop("where")
    summary = summarise(convs, per, where)
    rows = summary["rows"]
    cmd = "python -m benchmarks run quality" + (" --quick" if quick else "")
    if data != DEFAULT_DATA:
        cmd = f"python -m benchmarks.locomo{' --quick' if quick else ''} --data {data}"
    res = {
        "command": cmd,
        "data_sha256": data_sha,
        "model": MODEL,
        "k": K,
        "conversations": len(convs),
        "turns": sum(len(c.turns) for c in convs),
        "questions": sum(len(c.questions) for c in convs),
        "no_evidence": 0 if quick else no_ev,
        "summary": summary,
        "ratio_tiered_flat": rows["1-4"]["tiered"] / rows["1-4"]["flat"],
        "ratio_deep_flat": rows["1-4"]["deep"] / rows["1-4"]["flat"],
        "seconds": {"flat": flat_s, **info.pop("seconds"), "embed_or_cache": embed_s},
        "flat_found_setting_missed": flat_missed_overlap(convs, per, where),
        "evidence_tiers": evidence_tiers(convs, where),
        "tiered_store": info,
        "machine": {"python": sys.version.split()[0], "platform": platform.platform()},
        "credit": CREDIT,
    }
    md = markdown(res)
    print(md)
    if not quick and out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "locomo.md").write_text(md)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--quick", action="store_true", help="1 conversation, 50 questions")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    try:
        res = run(args.quick, None if args.quick else args.out, args.data)
    except FileNotFoundError as e:
        print(f"locomo: skipped, {e}")
        return 0
    if not args.quick:
        (args.out / "locomo.json").write_text(json.dumps(res, indent=2, default=str) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
