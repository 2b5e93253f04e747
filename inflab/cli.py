"""The ``inflab`` command.

Start-up stays light: click and the standard library only at import time; boto3,
moto and Textual load inside the commands that need them.

Exit codes: 0 done, 1 a step failed (or cleanup left something), 2 bad input, 130 cancelled.
"""

from __future__ import annotations

import json
import signal
import sys

import click

from .config import ConfigError, validate_session_name
from .errors import EXIT_FAILED, EXIT_USAGE, InflabError
from .track import IDS as STEP_IDS, TITLES as STEP_TITLES, TRACK

EXIT_CANCELLED = 130


class InputError(click.UsageError):
    """Bad input found after parsing (config, names); shown as one line, exit 2."""


class OneLineGroup(click.Group):
    """A click group whose usage errors are one line on stderr and exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.UsageError as e:
            msg = e.format_message().replace("\n", " ")
            click.echo(f"inflab: error: {msg}", err=True)
            sys.exit(EXIT_USAGE)
        except click.exceptions.Abort:
            click.echo("inflab: aborted", err=True)
            sys.exit(EXIT_CANCELLED)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)
        except InflabError as e:  # a message written for the user: bad input (2) or a failure (1)
            click.echo(f"inflab: error: {e}", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"inflab: error: {e.format_message()}", err=True)
            sys.exit(e.exit_code)


def _store():
    from .session import Store, StoreError

    try:
        return Store()
    except StoreError as e:
        if e.corrupt:
            click.echo(f"inflab: error: {e}", err=True)
            sys.exit(EXIT_FAILED)
        raise InputError(str(e)) from None


def _load_config(path: str | None, sandbox: bool):
    from . import config

    try:
        return config.load(path, sandbox=sandbox)
    except ConfigError as e:
        raise InputError(str(e)) from None


def _name(name: str, flag: str = "--name") -> str:
    try:
        return validate_session_name(name, flag)
    except ConfigError as e:
        raise InputError(str(e)) from None


def _lock(store, name: str, command: str):
    """Hold the session for this process, or say in one line who holds it (exit 2)."""
    from .session import SessionBusy, SessionLock

    try:
        return SessionLock(store.home, name).acquire(command)
    except SessionBusy as e:
        raise InputError(f"{e}") from None


def _existing(store, name: str, flag: str = "NAME"):
    from .session import SessionNotFound

    _name(name, flag)
    try:
        return store.get_session(name)
    except SessionNotFound:
        raise InputError(f"{flag}: no session named {name!r} (see: inflab sessions)") from None


@click.group(cls=OneLineGroup, invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="inflab", message="inflab %(version)s")
@click.pass_context
def main(ctx: click.Context) -> None:
    """inflab — a terminal lab for ML inference on AWS Inferentia.

    Run with no command to pick a saved session or start a new one. Add --sandbox to
    `new` or `run` to use an emulated AWS on this machine (no account needed).
    """
    if ctx.invoked_subcommand is None:
        from .tui import run_app

        store = _store()
        _farewell(store, run_app(store, _engines(), mode="picker"))


def _farewell(store, name: str | None) -> None:
    """After the lab closes: how to come back to the session, and what keeps running meanwhile."""
    from . import sandbox as sb

    if name and store.has_session(name):
        finished = store.get(name, "finished")
        click.echo(f"Session {name} is saved{' (finished)' if finished else ''}. Resume it with: inflab resume {name}")
        if not store.get_session(name).sandbox and not finished:
            live = [r for r in store.ledger(name, live_only=True) if r.kind == "ec2:instance" and r.physical_id]
            if live:
                click.echo(
                    f"Its instance {live[0].physical_id} keeps running in AWS, billed, until the lab's "
                    f"terminate step or: inflab cleanup {name}"
                )
    if sb.status(store.home):
        click.echo(
            "The sandbox keeps running in the background (its emulated AWS, instance and jobs). "
            "Stop it with: inflab sandbox stop"
        )


@main.command()
@click.option("--sandbox", is_flag=True, help="Use the local sandbox cloud instead of AWS.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Lab configuration (TOML).")
@click.option("--name", help="Session name (default: lab-DATE-TIME).")
def new(sandbox: bool, config_path: str | None, name: str | None) -> None:
    """Open the lab on a new session."""
    cfg = _load_config(config_path, sandbox)  # before the store: a refused config creates nothing
    store = _store()
    if name:
        _name(name)
        if store.has_session(name):
            raise InputError(f"--name: a session named {name!r} exists already (resume it: inflab resume {name})")
    else:
        name = store.new_session_name()
    from .tui import run_app

    _farewell(store, run_app(store, _engines(), mode="new", name=name, config=cfg, sandbox=sandbox))


@main.command()
@click.argument("name", required=False)
def resume(name: str | None) -> None:
    """Open the lab on a saved session (the most recent if NAME is left out)."""
    store = _store()
    if name is None:
        sessions = store.list_sessions()
        if not sessions:
            raise InputError("NAME: there are no saved sessions (start one: inflab new --sandbox)")
        name = sessions[0].name
    else:
        _existing(store, name)
    from .tui import run_app

    _farewell(store, run_app(store, _engines(), mode="resume", name=name))


def _open_or_create(store, name: str, sandbox: bool, config_path: str | None, cfg):
    """The session to run: an existing one (its saved config) or a new one with ``cfg``."""
    if store.has_session(name):
        info = store.get_session(name)
        if sandbox and not info.sandbox:
            raise InputError(f"--sandbox: session {name!r} runs against AWS, not the sandbox; use another --name")
        if config_path is not None:
            from .config import ConfigError, LabConfig

            if info.sandbox != sandbox:
                cfg = _load_config(config_path, info.sandbox)
            try:
                saved = LabConfig.from_snapshot(info.config, sandbox=info.sandbox).data
            except ConfigError as e:
                raise InputError(f"session {name!r} has a stored config this version refuses ({e})") from None
            if cfg.data != saved:
                raise InputError(f"--config: session {name!r} was started with a different config; use another --name")
        return info
    return store.create_session(name, cfg.data, sandbox=sandbox, track=cfg.track)


def _check_until(step: str | None, flag: str) -> None:
    if step is None:
        return
    if step not in STEP_IDS:
        raise InputError(f"{flag}: step {step!r} is not available in this version (available: {', '.join(STEP_IDS)})")


MARKS = {"running": "▶", "done": "✓", "failed": "✗", "cancelled": "■", "skipped": "·", "undone": "↺", "stale": "!"}


def _printer(out, tty: bool):
    """A listener that prints the engine's events as lines (progress only on a terminal)."""
    from .events import JobLines, StepFound, StepLogged, StepProgress, StepStateChanged, elapsed_text

    lead = "\r\033[K" if tty else ""

    def listener(ev):
        if isinstance(ev, StepStateChanged):
            line = f"{MARKS.get(ev.state, ' ')} {ev.step:<16} "
            line += (
                STEP_TITLES.get(ev.step, "")
                if ev.state == "running"
                else ev.state + (f": {ev.message}" if ev.message else "")
            )
            click.echo(lead + line, file=out)
        elif isinstance(ev, StepLogged):
            click.echo(lead + f"    {ev.message}", file=out)
        elif isinstance(ev, StepFound):
            click.echo(lead + f"{MARKS.get(ev.state, '!')} {ev.step:<16} {ev.message}", file=out)
        elif isinstance(ev, JobLines):  # a remote job's output, as it streams
            click.echo(lead + "\n".join(f"    │ {line}" for line in ev.lines), file=out)
        elif isinstance(ev, StepProgress) and tty:
            click.echo(f"\r\033[K    {elapsed_text(ev.elapsed)}  {ev.message}"[:200], file=out, nl=False)

    return listener


@main.command()
@click.option("--name", required=True, help="Session name; created if it does not exist.")
@click.option("--sandbox", is_flag=True, help="Use the local sandbox cloud instead of AWS.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False), help="Lab configuration (TOML).")
@click.option("--until", type=click.Choice(STEP_IDS), help="Stop after this step (default: every available step).")
@click.option(
    "--from", "from_step", type=click.Choice(STEP_IDS), help="Redo this step and the ones after it, even if done."
)
@click.option("--again", is_flag=True, help="Run a finished session again (steps still check what exists).")
@click.option("--delete-data", is_flag=True, help="batch-cleanup also deletes the results bucket (kept by default).")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON summary on stdout; progress goes to stderr.")
def run(
    name: str,
    sandbox: bool,
    config_path: str | None,
    until: str | None,
    from_step: str | None,
    again: bool,
    delete_data: bool,
    as_json: bool,
) -> None:
    """Run the lab's steps headless, creating or continuing session NAME."""
    _name(name)
    _check_until(until, "--until")
    _check_until(from_step, "--from")
    if until and from_step and STEP_IDS.index(from_step) > STEP_IDS.index(until):
        raise InputError(f"--from: step {from_step!r} comes after --until {until!r}")
    cfg = _load_config(config_path, sandbox)  # before the store: a refused config creates nothing
    store = _store()
    _lock(store, name, f"inflab run --name {name}")
    info = _open_or_create(store, name, sandbox, config_path, cfg)

    from .engine import Engine

    out = sys.stderr if as_json else sys.stdout
    engine = Engine(store, info.name, listener=_printer(out, out.isatty()))
    signal.signal(signal.SIGINT, lambda *_: engine.cancel())
    signal.signal(signal.SIGTERM, lambda *_: engine.cancel())
    result = engine.run(until, again=again, from_step=from_step, delete_data=delete_data)
    states = {sid: st["state"] for sid, st in engine.states().items()}
    if as_json:
        click.echo(
            json.dumps(
                {
                    "session": info.name,
                    "sandbox": info.sandbox,
                    "ok": result.ok,
                    "failed_step": None if result.ok else result.step,
                    "error": result.error or None,
                    "finished": bool(engine.finished()),
                    "nothing_to_do": result.finished,
                    "steps": states,
                    "host": store.get(info.name, "host"),
                },
                indent=2,
            )
        )
    elif result.finished:
        click.echo(f"Session {info.name} had finished: nothing was run or created.")
    elif result.ok:
        click.echo(f"Session {info.name}: done up to {until or engine.steps[-1].id}.")
    if result.cancelled:
        click.echo(f"inflab: cancelled at step {result.step}; run the same command again to go on", err=True)
        sys.exit(EXIT_CANCELLED)
    if not result.ok:
        if not as_json:
            click.echo(f"inflab: step {result.step} failed: {result.error}", err=True)
        sys.exit(EXIT_FAILED)


@main.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def sessions(ctx: click.Context, as_json: bool) -> None:
    """List saved sessions (or remove one: inflab sessions rm NAME)."""
    if ctx.invoked_subcommand is not None:
        return
    store = _store()
    ids = list(STEP_IDS)
    rows = []
    for s in store.list_sessions():
        done, nxt = store.progress(s.name, ids)
        finished = store.get(s.name, "finished")
        snapshot = s.config if isinstance(s.config, dict) else {}
        rows.append(
            {
                "name": s.name,
                "sandbox": s.sandbox,
                "track": s.track,
                "region": (snapshot.get("aws") or {}).get("region", "?"),
                "instance_type": (snapshot.get("instance") or {}).get("type", "?"),
                "created": s.created,
                "updated": s.updated,
                "steps_done": done,
                "steps_total": len(ids),
                "next_step": None if finished else nxt,
                "finished": bool(finished),
            }
        )
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("No saved sessions. Start one: inflab new --sandbox")
        return
    click.echo(f"{'NAME':<24} {'WHERE':<8} {'REGION':<12} {'TYPE':<14} {'PROGRESS':<9} NEXT")
    for r in rows:
        where = "sandbox" if r["sandbox"] else "aws"
        nxt = "finished" if r["finished"] else (r["next_step"] or "finished")
        click.echo(
            f"{r['name']:<24} {where:<8} {r['region']:<12} {r['instance_type']:<14} {r['steps_done']}/{r['steps_total']:<7} {nxt}"
        )


@sessions.command("rm")
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask before deleting the session's results.")
def sessions_rm(name: str, yes: bool) -> None:
    """Remove session NAME from this machine (refused while anything of it exists in AWS)."""
    store = _store()
    _existing(store, name)
    lock = _lock(store, name, f"inflab sessions rm {name}")
    found = _in_aws(_engine(store, name), name)
    if found:
        what = ", ".join(f"{r['type']} {r['id'] or r['name']}" for r in found[:5]) + (" …" if len(found) > 5 else "")
        click.echo(
            f"inflab: session {name} still has {len(found)} resource(s) in AWS ({what}); "
            f"remove them first: inflab cleanup {name}",
            err=True,
        )
        sys.exit(EXIT_FAILED)
    results = len(store.results(name))
    if results and not yes:
        if not sys.stdin.isatty():
            raise InputError(f"--yes: session {name} has {results} result(s) that go with it; pass --yes to confirm")
        click.confirm(f"Remove session {name} and its {results} result(s)?", abort=True)
    store.delete_session(name)
    lock.release()
    lock.path.unlink(missing_ok=True)
    click.echo(f"Removed session {name}" + (f" and its {results} result(s)" if results else "") + ".")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="The track's step specs as JSON (id, title, exercise, flags).")
def steps(as_json: bool) -> None:
    """List the lab's step ids (for --until) and what each does."""
    if as_json:
        click.echo(json.dumps([s.as_dict() for s in TRACK], indent=2))
        return
    for i, s in enumerate(TRACK, 1):
        click.echo(f"{i:>2}. {s.id:<17} {s.title}")


def _engines():
    """What the TUI opens a session's engine with (it does not import the engine itself)."""
    from .engine import Engine

    return Engine


def _engine(store, name):
    from .engine import Engine

    return Engine(store, name)


def _in_aws(engine, name: str) -> list[dict]:
    """What AWS has tagged for the session (exit 1 with one line when AWS cannot be asked)."""
    from .aws import inventory
    from .engine import describe_exception

    try:
        return inventory.session_resources(engine.aws, name)
    except Exception as e:
        click.echo(f"inflab: cannot ask AWS what session {name} has: {describe_exception(e)}", err=True)
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def resources(name: str, as_json: bool) -> None:
    """What AWS has for session NAME, found by its inflab:session tag."""
    store = _store()
    _existing(store, name)
    engine = _engine(store, name)
    found = _in_aws(engine, name)
    if as_json:
        click.echo(json.dumps(found, indent=2))
    elif not found:
        click.echo(f"Nothing in {engine.config.region} is tagged inflab:session={name}.")
    else:
        click.echo(f"{'TYPE':<26} {'ID':<40} NAME")
        for r in found:
            extra = f" [{r['state']}]" if r.get("state") else ""
            name = "" if r["name"] == r["id"] else r["name"]
            click.echo(f"{r['type']:<26} {r['id']:<40} {name}{extra}".rstrip())


@main.command()
@click.argument("name")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.option("--delete-data", is_flag=True, help="Also delete the results bucket (kept by default).")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON on stdout; progress goes to stderr.")
def cleanup(name: str, yes: bool, delete_data: bool, as_json: bool) -> None:
    """Delete everything session NAME created, then verify by tag that nothing is left (the results
    bucket is kept unless --delete-data)."""
    store = _store()
    info = _existing(store, name)
    _lock(store, name, f"inflab cleanup {name}")
    if not yes:
        if not sys.stdin.isatty():
            raise InputError("--yes: cleanup deletes AWS resources; pass --yes to confirm when not at a terminal")
        where = "the sandbox" if info.sandbox else f"AWS ({info.config['aws']['region']})"
        click.confirm(f"Terminate and delete everything session {name} created in {where}?", abort=True)

    from .engine import Engine
    from .events import StepLogged, StepStateChanged

    out = sys.stderr if as_json else sys.stdout

    def listener(ev):
        if isinstance(ev, StepLogged):
            click.echo(f"    {ev.message}", file=out)
        elif isinstance(ev, StepStateChanged) and ev.state == "failed":
            click.echo(f"✗ {ev.step}: {ev.message}", file=out)

    engine = Engine(store, name, listener=listener)
    errors, leftovers = engine.cleanup(delete_data=delete_data)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "session": name,
                    "ok": not errors and not leftovers,
                    "errors": errors,
                    "leftovers": leftovers,
                    "kept": engine.kept,
                },
                indent=2,
            )
        )
        sys.exit(EXIT_FAILED if errors or leftovers else 0)
    if errors or leftovers:
        for e in errors:
            click.echo(f"inflab: {e}", err=True)
        for r in leftovers:
            click.echo(f"inflab: still there: {r['type']} {r['id']} {r['name']}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(
        f"Session {name}: everything it created is gone"
        + (f" but its results bucket (inflab cleanup {name} --delete-data removes it)." if engine.kept else ".")
    )


def _output_file(path: str, flag: str) -> str:
    """The directory ``path`` will be written in; refuses, in one line, a path that exists and is
    not a regular file (a directory, a fifo, a device), or whose directory is missing."""
    import os
    import stat

    try:
        st = os.stat(path)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise InputError(f"{flag} {path}: {e.strerror}") from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        raise InputError(f"{flag} {path}: exists and is not a regular file")
    parent = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(parent):
        raise InputError(f"{flag} {path}: no directory {parent}")
    return parent


def _write_replacing(path: str, text: str, flag: str) -> None:
    """Write ``text`` to ``path`` by write-then-rename, so a reader never sees half a file."""
    import contextlib
    import os
    import tempfile

    parent = _output_file(path, flag)
    try:
        fd, tmp = tempfile.mkstemp(dir=parent, prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{flag} {path}: cannot write there ({e.strerror})") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # as an ordinary new file would be (mkstemp makes it 0600)
        os.replace(tmp, path)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise InputError(f"{flag} {path}: cannot write it ({e.strerror})") from None


@main.command()
@click.argument("name", required=False)
@click.option(
    "--from",
    "from_dir",
    metavar="DIR",
    help="Import the original workshop's .log and neuronperf .json files from DIR instead of reading a session.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["table", "csv", "md", "json"]),
    default="table",
    show_default=True,
    help="Output format.",
)
@click.option("--limit-ms", type=float, metavar="MS", help="Latency limit for the recommendation, in milliseconds.")
@click.option(
    "--percentile",
    type=click.Choice(["p50", "p90", "p95", "p99"]),
    default="p90",
    show_default=True,
    help="The latency percentile the limit and the frontier apply to.",
)
@click.option(
    "--workshop-csv",
    "workshop_file",
    metavar="FILE",
    help="Also write the rows in the original workshop's CSV columns to FILE.",
)
def report(
    name: str | None, from_dir: str | None, fmt: str, limit_ms: float | None, percentile: str, workshop_file: str | None
) -> None:
    """Benchmark results of session NAME (or imported from --from DIR), with cost per million
    inferences and the cheapest and fastest configuration under a latency limit."""
    import math

    from . import report as rep

    if (name is None) == (from_dir is None):
        raise InputError("give a session NAME or --from DIR (one of the two)")
    if limit_ms is not None and not (math.isfinite(limit_ms) and limit_ms > 0):
        raise InputError(f"--limit-ms: {limit_ms:g} is not a positive number of milliseconds")
    if workshop_file is not None:
        _output_file(workshop_file, "--workshop-csv")  # refused before anything is read or written
    region = None  # imported files name no region
    if from_dir is not None:
        from . import workshop

        try:
            rows, warnings = workshop.import_dir(from_dir)
        except workshop.WorkshopError as e:
            for w in e.warnings:
                click.echo(f"inflab: warning: {w}", err=True)
            raise InputError(str(e)) from None
    else:
        store = _store()
        _existing(store, name)
        rows, warnings = rep.session_rows(store, name)
        region = rep.session_region(store, name)
    for w in warnings:
        click.echo(f"inflab: warning: {w}", err=True)
    if workshop_file is not None:
        _write_replacing(workshop_file, rep.workshop_csv(rows), "--workshop-csv")
    if not rows and fmt == "table":
        click.echo(f"No benchmark results in session {name} yet (run: inflab run --name {name} --until benchmark)")
        return
    click.echo(rep.render(rows, fmt, limit_ms=limit_ms, percentile=percentile, region=region))


def _load_roster(path: str):
    from .instructor import roster

    try:
        return roster.load(path)
    except ConfigError as e:
        raise InputError(str(e)) from None


def _room_table(room) -> None:
    """The room as text. Everything a participant's account or the roster wrote goes through
    ``shown``: a beacon's step, error or session name cannot move the cursor or write the clipboard."""
    from .events import elapsed_text
    from .untrusted import shown

    click.echo(shown(room.summary().line()))
    click.echo(
        f"{'PARTICIPANT':<14} {'ACCOUNT':<13} {'REGION':<12} {'STEP':<16} {'STATE':<12} {'ON STEP':>8} "
        f"{'INST':>4} {'SPEND':>8}  NOTE"
    )
    for r in room.rows:
        on = r.on_step_s()
        state = ("STUCK " if r.stuck() else "") + r.state
        note = r.reason or r.error or r.session
        if r.warnings:
            note += f" (+{len(r.warnings)} warning(s): {r.warnings[0]})"
        click.echo(
            f"{shown(r.label):<14} {shown(r.account) or '-':<13} {shown(r.region):<12} "
            f"{shown(r.step, 40) or '-':<16} {state:<12} {elapsed_text(on) if on is not None else '-':>8} "
            f"{len(r.instances):>4} ${r.spend_usd:>7.2f}  {shown(note, 400)}"
        )


def _json(value) -> str:
    """Strict JSON (no NaN or Infinity); strings escaped, so control characters cannot reach the terminal."""
    return json.dumps(value, indent=2, allow_nan=False)


def _cleanup_lines(results) -> list[str]:
    from .untrusted import shown

    lines = []
    for r in results:
        mark = "✓" if r.ok else "✗"
        kept = f"; kept {', '.join(k.get('name') or k.get('id', '?') for k in r.kept)}" if r.kept else ""
        errors = f"; {'; '.join(r.errors)}" if r.errors else ""
        lines.append(
            shown(
                f"{mark} {r.label:<14} {r.account or '?':<13} {r.region:<12} "
                f"{len(r.sessions)} session(s): {r.outcome()}{kept}{errors}",
                2000,
            )
        )
        for busy in r.active:
            lines.append(
                shown(
                    f"  ⚠ {r.label}: session {busy} — it looked still active when cleaned: if the "
                    "participant's lab is still going it stops at its next step and may publish its "
                    "beacon again; run the cleanup again once they have stopped",
                    600,
                )
            )
    return lines


def _confirm_everyone(yes: bool, what: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise InputError(f"--yes: {what}; pass --yes to confirm when not at a terminal")
    typed = click.prompt(f"{what}. Type 'everyone' to confirm", default="", show_default=False)
    if typed != "everyone":
        click.echo("inflab: not confirmed; nothing was removed", err=True)
        sys.exit(EXIT_CANCELLED)


@main.command()
@click.argument("roster", required=False)
@click.option("--once", is_flag=True, help="Read the room once, print the rows and exit (no screen).")
@click.option("--preflight", is_flag=True, help="Check every account before the event, print what will fail, exit.")
@click.option(
    "--cleanup-all", is_flag=True, help="Remove everything every participant's sessions made, then check by tag."
)
@click.option("--yes", is_flag=True, help="Do not ask before --cleanup-all.")
@click.option("--delete-data", is_flag=True, help="--cleanup-all also deletes the results buckets (kept by default).")
@click.option("--json", "as_json", is_flag=True, help="With --once, --preflight or --cleanup-all: JSON on stdout.")
@click.option(
    "--demo", type=int, metavar="N", help="Make a sandbox room of N sessions at different steps (one failed)."
)
@click.option("--write-roster", metavar="FILE", help="With --demo: where to write the room's roster.")
def instructor(
    roster: str | None,
    once: bool,
    preflight: bool,
    cleanup_all: bool,
    yes: bool,
    delete_data: bool,
    as_json: bool,
    demo: int | None,
    write_roster: str | None,
) -> None:
    """Watch a workshop room: one row per participant of ROSTER (a TOML file), preflight, cleanup.

    With no flag it opens the dashboard. `inflab instructor --demo 3 --write-roster room.toml`
    makes a sandbox room to try it on."""
    modes = [
        flag
        for flag, on in (
            ("--once", once),
            ("--preflight", preflight),
            ("--cleanup-all", cleanup_all),
            ("--demo", demo is not None),
        )
        if on
    ]
    if len(modes) > 1:
        raise InputError(f"{modes[1]}: cannot be combined with {modes[0]}")
    if demo is not None:
        from .instructor.demo import MAX_ROOM

        if roster is not None:
            raise InputError("--demo: makes its own room; give --write-roster FILE instead of ROSTER")
        if write_roster is None:
            raise InputError("--write-roster: --demo needs a FILE to write the room's roster to")
        if not 1 <= demo <= MAX_ROOM:
            raise InputError(f"--demo: {demo} is not a room size (1..{MAX_ROOM})")
        _output_file(write_roster, "--write-roster")
        store = _store()
        from .instructor.demo import make_room

        click.echo(f"Making a sandbox room of {demo} session(s)…")
        room = make_room(store, demo, log=lambda line: click.echo(f"    {line}"))
        _write_replacing(write_roster, room.to_toml(), "--write-roster")
        from .untrusted import shown

        click.echo(f"Wrote {shown(write_roster)}. Watch the room: inflab instructor {shown(write_roster)}")
        return
    if write_roster is not None:
        raise InputError("--write-roster: only goes with --demo N")
    if roster is None:
        raise InputError("ROSTER: give the roster file (or make a sandbox room: --demo 3 --write-roster room.toml)")
    if as_json and not modes:
        raise InputError("--json: goes with --once, --preflight or --cleanup-all")
    if delete_data and not cleanup_all:
        raise InputError("--delete-data: only goes with --cleanup-all (the dashboard asks)")
    if yes and not cleanup_all:
        raise InputError("--yes: only goes with --cleanup-all")
    room_roster = _load_roster(roster)
    store = _store()
    from .instructor.room import RoomReader
    from .untrusted import shown

    reader = RoomReader(room_roster, store.home)
    try:
        if once:
            room = reader.refresh()
            if as_json:
                click.echo(_json(room.to_json()))
            else:
                _room_table(room)
            sys.exit(EXIT_FAILED if any(r.state in ("unreachable", "unreadable") for r in room.rows) else 0)
        if preflight:
            from .instructor.preflight import summary_lines

            results = reader.preflight()
            if as_json:
                click.echo(_json({"accounts": [r.to_json() for r in results], "summary": summary_lines(results)}))
            else:
                for r in results:
                    click.echo(shown(f"{r.region} {r.account or '?'} ({r.reach}; {', '.join(r.participants)})"))
                    for c in r.checks:
                        click.echo(shown(f"  {'✓' if c.ok else '✗' if c.ok is False else '?'} {c.name:<12} {c.detail}"))
                for line in summary_lines(results):
                    click.echo(shown(line))
            sys.exit(EXIT_FAILED if any(r.failing for r in results) else 0)
        if cleanup_all:
            from .instructor.cleanup import CleanupBusy, CleanupError

            try:
                with reader.exclusive_cleanup():  # before asking: a second cleanup says who holds it, exit 2
                    _confirm_everyone(
                        yes,
                        f"This removes everything the {len(reader.labels)} participant(s) of "
                        f"'{shown(room_roster.name, 80)}' made" + (", results buckets included" if delete_data else ""),
                    )
                    out = sys.stderr if as_json else sys.stdout
                    results = reader.cleanup(
                        list(reader.labels),
                        delete_data=delete_data,
                        log=lambda line: click.echo(f"    {shown(line, 2000)}", file=out),
                    )
            except (CleanupBusy, CleanupError) as e:
                raise InputError(f"--cleanup-all: {e}") from None
            if as_json:
                click.echo(_json([r.to_json() for r in results]))
            else:
                click.echo("\n".join(_cleanup_lines(results)))
            sys.exit(0 if all(r.ok for r in results) else EXIT_FAILED)
        from .tui import run_instructor

        run_instructor(reader, refresh_s=room_roster.refresh_s)
    finally:
        reader.close()


@main.group()
def policy() -> None:
    """Print the least-privilege IAM policies the lab needs (JSON, for aws iam create-policy)."""


def _print_policy(doc: dict) -> None:
    from .aws.policy import MANAGED_POLICY_LIMIT, split

    docs = split(doc)
    click.echo(json.dumps(docs[0] if len(docs) == 1 else docs, indent=2))
    if len(docs) > 1:
        click.echo(
            f"inflab: note: the policy is longer than IAM's {MANAGED_POLICY_LIMIT:,} characters for one managed "
            f"policy, so it is printed as a JSON list of {len(docs)} documents: create a policy from each",
            err=True,
        )


@policy.command("participant")
def policy_participant() -> None:
    """The policy a participant's identity needs to run the lab on AWS: exactly the actions it calls,
    on its own resources (inflab-*, /inflab/) wherever AWS allows the scoping."""
    from .aws.policy import participant

    _print_policy(participant())


@policy.command("instructor")
@click.option(
    "--trust",
    "trust_account",
    metavar="ACCOUNT_ID",
    help="Print instead the trust policy of the role the instructor (in ACCOUNT_ID) assumes in a "
    "participant's account.",
)
@click.option("--external-id", metavar="ID", help="With --trust: the external ID the roster gives (external_id).")
def policy_instructor(trust_account: str | None, external_id: str | None) -> None:
    """The policy an instructor reads the room and cleans up with: the room's and preflight's reads, and
    the look-up, delete and disable actions of cleanup. With --trust ACCOUNT_ID --external-id ID: the
    trust policy of the role the instructor assumes in a participant's account."""
    from .aws import policy as pol

    if trust_account is None:
        if external_id is not None:
            raise InputError("--external-id: only goes with --trust ACCOUNT_ID")
        _print_policy(pol.instructor())
        return
    if external_id is None:
        raise InputError("--external-id: --trust needs the external ID the roster gives the instructor (external_id)")
    if not pol.ACCOUNT_ID.fullmatch(trust_account):
        raise InputError(f"--trust: {trust_account!r} is not an AWS account id (12 digits)")
    if not pol.EXTERNAL_ID.fullmatch(external_id):
        raise InputError(
            f"--external-id: {external_id!r} is not an external ID (2 to 1224 of letters, digits and _+=,.@:/-)"
        )
    click.echo(json.dumps(pol.trust(trust_account, external_id), indent=2))


@main.group()
def sandbox() -> None:
    """The local sandbox cloud (AWS emulated on loopback)."""


def _iam_check(info) -> str:
    if not info.iam_policy:
        return "IAM check: off (start it with --iam-policy FILE to sign the lab's calls as a user holding only that policy)"
    return f"IAM check: on — the lab signs as an emulated user holding only the policy in {info.iam_policy}"


@sandbox.command("start")
@click.option(
    "--aws-like",
    is_flag=True,
    help="Answer as AWS does where the emulator is kinder (every entry of the "
    "sandbox's faults table that is AWS's own behaviour).",
)
@click.option(
    "--iam-policy",
    "iam_policy",
    metavar="FILE",
    help="Check the lab's calls as an IAM user that holds only this policy (inflab policy participant > FILE).",
)
def sandbox_start(aws_like: bool, iam_policy: str | None) -> None:
    """Start the sandbox daemon (does nothing if it is running)."""
    import os

    from . import sandbox as sb
    from .sandbox.faults import AWS_LIKE, merged

    if iam_policy is not None:
        from .sandbox.iam import PolicyFileError, load_documents

        try:
            load_documents(iam_policy)
        except PolicyFileError as e:
            raise InputError(f"--iam-policy: {e}") from None
        iam_policy = os.path.abspath(iam_policy)
    store = _store()
    running = sb.status(store.home)
    if running and iam_policy is not None and running.iam_policy != iam_policy:
        now = f"checking the policy in {running.iam_policy}" if running.iam_policy else "without an IAM check"
        raise InputError(f"--iam-policy: the sandbox is running already, {now}; stop it first (inflab sandbox stop)")
    try:
        info = running or sb.ensure_running(store.home, iam_policy=iam_policy, aws_like=aws_like)
        if aws_like and running:  # already up: turn the AWS behaviours on in its table
            sb.set_faults(info, merged(sb.get_faults(info), AWS_LIKE))
    except sb.SandboxError as e:
        click.echo(f"inflab: {e}", err=True)
        sys.exit(EXIT_FAILED)
    click.echo(
        f"sandbox running (pid {info.pid}): AWS endpoint {info.endpoint}, SSH on 127.0.0.1 port {info.ssh_port}"
        + ("; it answers as AWS does (--aws-like)" if aws_like else "")
    )
    click.echo(f"  {_iam_check(info)}")


@sandbox.command("status")
@click.option("--json", "as_json", is_flag=True)
def sandbox_status(as_json: bool) -> None:
    """Is the sandbox running? Exit 0 if so, 1 if not."""
    from . import sandbox as sb

    info = sb.status(_store().home)
    table: dict = {}
    like = False
    if info:
        from .sandbox.faults import AWS_LIKE

        table = sb.get_faults(info)
        like = all(table.get(s, {}).get(k) == v for s, entries in AWS_LIKE.items() for k, v in entries.items())
    if as_json:
        click.echo(
            json.dumps(
                {
                    "running": bool(info),
                    "pid": info.pid if info else None,
                    "endpoint": info.endpoint if info else None,
                    "ssh_port": info.ssh_port if info else None,
                    "iam_policy": (info.iam_policy or None) if info else None,
                    "aws_like": like if info else None,
                    "faults": table if info else None,
                }
            )
        )
    elif info:
        click.echo(
            f"sandbox running (pid {info.pid})\n  AWS endpoint: {info.endpoint}\n"
            f"  SSH (the instance): 127.0.0.1 port {info.ssh_port}  — ssh -p {info.ssh_port} -i KEY ubuntu@127.0.0.1\n"
            f"  {_iam_check(info)}\n"
            f"  answers as AWS does (--aws-like): {'yes' if like else 'no'}"
            + (f"; faults set: {json.dumps(table, sort_keys=True)}" if table else "")
        )
    else:
        click.echo("sandbox not running (it starts by itself when a sandbox session needs it: inflab sandbox start)")
    sys.exit(0 if info else 1)


@sandbox.command("stop")
def sandbox_stop() -> None:
    """Stop the sandbox daemon. Its emulated resources are forgotten; its image store is kept."""
    from . import sandbox as sb
    from .sandbox import image_store

    home = _store().home
    click.echo("sandbox stopped" if sb.stop(home) else "sandbox was not running")
    held = image_store.usage(home)
    if held.images:
        click.echo(
            f"Its image store keeps {image_store.size_text(held.bytes)} in {held.images} image(s) "
            f"({image_store.store_dir(home)}), for the next session; inflab sandbox prune frees it"
        )


@sandbox.command("prune")
def sandbox_prune() -> None:
    """Delete the sandbox's image store (the job virtualenvs build-image made); refused while the
    sandbox or a job of its instances runs. A session that needs an image builds it again."""
    from .sandbox import image_store

    home = _store().home
    try:
        freed = image_store.prune(home)
    except image_store.PruneRefused as e:
        click.echo(f"inflab: nothing deleted: {e}", err=True)
        sys.exit(EXIT_FAILED)
    if not freed.images:
        click.echo(f"The image store is empty: nothing to free ({image_store.store_dir(home)})")
        return
    click.echo(
        f"Freed {image_store.size_text(freed.bytes)}: deleted {freed.images} image(s) from {image_store.store_dir(home)}. "
        "A session that needs one builds it again at its build-image step."
    )


if __name__ == "__main__":
    main()
