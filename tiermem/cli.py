"""The `tiermem` command line (typer + rich).

Exit codes: 0 ok, 1 user error (a clear message, no traceback), 2 usage.
Every command takes ``--path`` and ``--config`` (or ``TIERMEM_PATH`` /
``TIERMEM_CONFIG``); other settings come from ``TIERMEM_*`` variables.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from tiermem.engine import Engine
from tiermem.errors import LockedError, TierMemError, ValidationError
from tiermem.model import Memory

app = typer.Typer(
    name="tiermem",
    help="Tiered memory for AI agents: Redis hot, usearch warm, Parquet cold.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
out = Console()
err = Console(stderr=True)

PathOpt = Annotated[Path, typer.Option("--path", envvar="TIERMEM_PATH", help="Data dir.")]
ConfigOpt = Annotated[
    Path | None, typer.Option("--config", envvar="TIERMEM_CONFIG", help="Config file.")
]
NsOpt = Annotated[str, typer.Option("--ns", help="Namespace (tenant), e.g. user:alice.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON.")]
JobArg = Annotated[
    str, typer.Argument(help="demote, promote, expire, consolidate, compact or checkpoint.")
]
DEFAULT_PATH = Path(".tiermem")


@contextlib.contextmanager
def _engine(path: Path, config: Path | None, *, write: bool) -> Iterator[Engine]:
    """Open the store; readers fall back to read-only when a writer (a worker) holds it."""
    import tiermem

    try:
        mem = tiermem.open(path, config)
    except LockedError:
        if write:
            raise
        mem = tiermem.open(path, config, read_only=True)
    with mem:
        yield mem


def _memory_json(m: Memory) -> dict[str, Any]:
    return m.model_dump(mode="json", exclude={"embedding"})


def _parse_meta(pairs: list[str]) -> dict[str, Any]:
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ValidationError(f"expected key=value, got {pair!r}", field="--meta")
        try:
            meta[key] = json.loads(raw)  # numbers, true/false/null, ["lists"]
        except json.JSONDecodeError:
            meta[key] = raw
    return meta


@app.command()
def add(
    text: str,
    ns: NsOpt,
    kind: Annotated[str, typer.Option(help="episodic, semantic or procedural.")] = "episodic",
    meta: Annotated[list[str] | None, typer.Option(help="Metadata key=value (repeatable).")] = None,
    importance: Annotated[float, typer.Option(help="0..1")] = 0.5,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Add one memory; prints its id."""
    with _engine(path, config, write=True) as mem:
        m = mem.add(
            text, namespace=ns, kind=kind, metadata=_parse_meta(meta or []), importance=importance
        )
    out.print_json(data=_memory_json(m)) if as_json else out.print(m.id)


@app.command()
def search(
    query: str,
    ns: NsOpt,
    k: Annotated[int, typer.Option("-k", help="How many hits.")] = 10,
    deep: Annotated[bool, typer.Option("--deep", help="Also search the cold tier.")] = False,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Search one namespace."""
    with _engine(path, config, write=False) as mem:
        hits = mem.search(query, namespace=ns, k=k, deep=deep)
    if as_json:
        data = [{"score": h.score, "tier": h.tier, "memory": _memory_json(h.memory)} for h in hits]
        out.print_json(data=data)
        return
    table = Table("score", "tier", "kind", "id", "text")
    for h in hits:
        table.add_row(f"{h.score:.3f}", h.tier, h.memory.kind, h.memory.id, h.memory.text)
    out.print(table)


@app.command()
def get(id: str, path: PathOpt = DEFAULT_PATH, config: ConfigOpt = None) -> None:
    """Print one memory as JSON."""
    with _engine(path, config, write=False) as mem:
        m = mem.get(id)
    out.print_json(data=_memory_json(m))


@app.command()
def forget(
    ns: NsOpt,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
) -> None:
    """Erase a namespace from every tier."""
    if not yes and sys.stdin.isatty():
        typer.confirm(f"Erase every memory of {ns!r}?", abort=True)
    with _engine(path, config, write=True) as mem:
        n = mem.forget(namespace=ns)
    out.print(f"forgot {n} memories of {ns}")


@app.command()
def stats(path: PathOpt = DEFAULT_PATH, config: ConfigOpt = None, as_json: JsonOpt = False) -> None:
    """Sizes per tier and counts per kind."""
    with _engine(path, config, write=False) as mem:
        s = mem.stats()
    if as_json:
        out.print_json(data=s.model_dump(mode="json"))
        return
    table = Table("tier", "memories", "bytes", "namespaces")
    for name, t in s.tiers.items():
        table.add_row(name, str(t.count), str(t.bytes), str(t.namespaces))
    out.print(table)
    out.print("kinds: " + ", ".join(f"{k}={v}" for k, v in s.kinds.items()))


@app.command()
def sql(
    query: str,
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json.")] = "table",
    ns: Annotated[
        str | None, typer.Option("--ns", help="Restrict every view to one namespace.")
    ] = None,
    explain: Annotated[
        bool, typer.Option("--explain", help="Show DuckDB's plan instead of the rows.")
    ] = False,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
) -> None:
    """Run one read-only SELECT over the views hot, warm, cold, memories, events."""
    if fmt not in ("table", "csv", "json"):
        raise ValidationError("must be table, csv or json", field="--format")
    with _engine(path, config, write=False) as mem:
        result = mem.sql(query, namespace=ns, explain=explain)
    rows = result.to_pylist()
    if explain and fmt == "table":
        sys.stdout.write("".join(str(r.get("explain_value", "")) + "\n" for r in rows))
    elif fmt == "json":
        out.print_json(data=rows, default=str)
    elif fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=result.column_names)
        writer.writeheader()
        writer.writerows(rows)
        sys.stdout.write(buf.getvalue())
    else:
        table = Table(*result.column_names)
        for row in rows:
            table.add_row(*(_cell(v) for v in row.values()))
        out.print(table)


def _cell(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."


@app.command()
def plan(
    job: JobArg,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Show what one pass of a lifecycle job would do, and why (changes nothing)."""
    with _engine(path, config, write=False) as mem:
        p = mem.plan(job)
    if as_json:
        out.print_json(data=p.model_dump(mode="json"))
        return
    table = Table("action", "id", "namespace", "from", "to", "reason", title=f"plan: {job}")
    for a in p.actions:
        table.add_row(a.action, a.id, a.namespace, a.src, a.dst or "", a.reason)
    out.print(table)
    for note in p.notes:
        out.print(f"note: {note}")
    out.print(f"{len(p.actions)} actions")


@app.command()
def run(
    job: JobArg,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run one pass of a lifecycle job now (crash-safe, logged as events)."""
    from rich.progress import Progress as Bar

    with _engine(path, config, write=True) as mem, Bar(console=err, transient=True) as bar:
        task = bar.add_task(job, total=None)
        report = mem.run(
            job, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    if as_json:
        out.print_json(data=report.model_dump(mode="json"))
        return
    out.print(
        f"{job} (run {report.run}): moved {report.moved}, deleted {report.deleted}, "
        f"merged {report.merged} in {report.seconds:.2f}s"
    )
    for note in report.notes:
        out.print(f"note: {note}")
    for error in report.errors:
        err.print(f"[red]error:[/red] {error}", highlight=False)
    if report.errors:
        raise typer.Exit(1)


@app.command()
def worker(
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    log_level: Annotated[str | None, typer.Option(help="DEBUG, INFO... (or log.level)")] = None,
    metrics_port: Annotated[int | None, typer.Option(help="Serve Prometheus metrics.")] = None,
    metrics_addr: Annotated[str, typer.Option(help="Address for --metrics-port.")] = "127.0.0.1",
) -> None:
    """Run lifecycle jobs in the foreground until SIGINT/SIGTERM.

    The policy is reloaded on SIGHUP and, for a policy file, when the file
    changes (scheduler.policy_watch).
    """
    import logging

    from tiermem.config import load_config
    from tiermem.lifecycle.scheduler import install_signal_handlers
    from tiermem.obs import logs

    logs.configure_from(load_config(config), log_level)  # [log] section; --log-level wins
    with _engine(path, config, write=True) as mem:
        if metrics_port is not None:
            mem.serve_metrics(metrics_port, metrics_addr)
        sched = mem.scheduler(blocking=True)
        # SIGHUP (and, for a policy file, an edit to it) re-reads the policy: a bad
        # file is rejected and the old rules kept
        install_signal_handlers(sched)
        logging.getLogger("tiermem.worker").info(
            "worker on %s: jobs every %s s; policy %s", mem.path, sched.intervals, mem.policy.source
        )
        sched.start()  # returns after a clean shutdown
    logging.getLogger("tiermem.worker").info("worker stopped")


@app.command()
def export(
    file: Annotated[Path, typer.Argument(help="Output file: .parquet (zstd) or .jsonl.")],
    ns: Annotated[str | None, typer.Option("--ns", help="Only this namespace.")] = None,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
) -> None:
    """Export memories (every field but the tier) to Parquet or JSON Lines."""
    from rich.progress import Progress as Bar

    with _engine(path, config, write=False) as mem, Bar(console=err, transient=True) as bar:
        task = bar.add_task("export", total=None)
        n = mem.export(
            file, ns, progress=lambda done, total: bar.update(task, completed=done, total=total)
        )
    out.print(f"exported {n} memories to {file}")


@app.command("import")
def import_(
    file: Annotated[Path, typer.Argument(help="A .parquet or .jsonl export.")],
    ns: Annotated[str | None, typer.Option("--ns", help="Only this namespace's rows.")] = None,
    tier: Annotated[str, typer.Option(help="Tier to insert into: l1, l2 or l3.")] = "l1",
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
) -> None:
    """Import an export, keeping ids and every field; ids already stored are skipped."""
    from rich.progress import Progress as Bar

    from tiermem.transfer import import_file

    with _engine(path, config, write=True) as mem, Bar(console=err, transient=True) as bar:
        task = bar.add_task("import", total=None)
        result = import_file(
            mem,
            file,
            ns,
            tier=tier,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    out.print(
        f"imported {result.imported} memories from {file}; skipped {result.skipped} "
        f"already stored; {result.filtered} of other namespaces"
    )


@app.command()
def check(
    fix: Annotated[bool, typer.Option("--fix", help="Repair what can be repaired.")] = False,
    path: PathOpt = DEFAULT_PATH,
    config: ConfigOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Check consistency across tiers; exit 1 if problems remain (unfixed)."""
    with _engine(path, config, write=fix) as mem:
        report = mem.check(fix=fix)
    if as_json:
        out.print_json(data=report.model_dump(mode="json"))
    elif report.problems:
        table = Table("kind", "id / path", "detail", "fixed", title="problems")
        for p in report.problems:
            table.add_row(p.kind, p.id or p.path or "", p.detail, "yes" if p.fixed else "no")
        out.print(table)
    if not as_json:
        checked = ", ".join(f"{k}={v}" for k, v in report.checked.items())
        out.print(
            f"{len(report.problems)} problems, {len(report.unfixed)} unfixed (checked {checked})"
        )
    if not report.ok:
        raise typer.Exit(1)


def _register_config() -> None:
    from tiermem.cli_config import app as config_app

    app.add_typer(config_app, name="config")


_register_config()


def _register_bench() -> None:
    from tiermem.cli_bench import bench

    passthrough = {"allow_extra_args": True, "ignore_unknown_options": True}
    app.command("bench", context_settings=passthrough)(bench)


_register_bench()


@app.command()
def demo(
    keep: Annotated[Path | None, typer.Option(help="Keep the demo store in this dir.")] = None,
) -> None:
    """A tour on the embedded defaults: add, search, demote, deep search, SQL."""
    from tiermem.demo import run_demo

    run_demo(out, keep)


def main() -> None:
    """Entry point. Click handles usage errors (exit 2); user errors exit 1, no traceback."""
    try:
        app()
    except TierMemError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False)
        sys.exit(1)


if __name__ == "__main__":
    main()
