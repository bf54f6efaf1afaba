"""gen jobs and gen worker: thin wrappers over db.jobs and gen.jobs."""

from __future__ import annotations

import os
import time

import click

from gen.commands.options import RECORD_ID, absolute_sqlite_url, database_option, name_option, open_db
from gen.devices import DEVICES
from gen.errors import GenError
from gen.text import printable


def _when(moment) -> str:  # noqa: ANN001 - a datetime or None
    return "-" if moment is None else f"{moment:%Y-%m-%d %H:%M:%S}"


@click.group("jobs")
def jobs() -> None:
    """Submit gen commands to a queue that workers (gen worker) run; list, show, follow (logs) and
    cancel them."""


@jobs.command("submit", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("arguments", nargs=-1, type=click.UNPROCESSED, required=True, metavar="-- COMMAND [ARGS]...")
@database_option
@click.pass_context
def jobs_submit(ctx: click.Context, arguments: tuple[str, ...], database_url: str | None) -> None:
    """Queue a gen command, e.g. gen jobs submit -- train --data pbc4 --out runs/b --iters 100000.

    Relative paths in it are relative to the folder it is submitted from; the worker runs it
    with the worker's database and --device. This command's own --db goes before the --.
    """
    from gen.jobs import check_job_command, command_line, submit

    root = ctx.find_root()  # gen itself, whose commands a job may name
    commands = root.command.list_commands(root) if isinstance(root.command, click.Group) else []
    check_job_command(arguments, commands)  # before a database is opened (or created) for it
    job_id = submit(open_db(database_url), arguments, os.getcwd(), commands)
    click.echo(f"job {job_id} queued: {command_line(arguments)}")


@jobs.command("list")
@click.option("--status", "statuses", multiple=True, help="Only jobs in this status (repeatable).")
@database_option
def jobs_list(statuses: tuple[str, ...], database_url: str | None) -> None:
    """One line per job: id, status, attempts, worker, created, finished, model, command."""
    from sqlalchemy.orm import Session

    from db import jobs as job_rows
    from gen.jobs import command_line

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        rows = job_rows.list_jobs(session, statuses)
    if not rows:
        click.echo("no jobs; queue one with gen jobs submit -- COMMAND ...")
        return
    click.echo(
        f"{'id':>4}  {'status':<9} {'tries':>5}  {'worker':<20} {'finished':<19} {'model':>5}  command"
    )
    for job in rows:
        status = "cancel..." if job.cancel_requested and job.status == "running" else job.status
        click.echo(
            f"{job.id:>4}  {status:<9} {job.attempts:>5}  {printable(job.worker or '-'):<20} "
            f"{_when(job.finished_at):<19} "
            f"{job.gan_id or '-':>5}  {command_line(job.arguments)}"
        )


@jobs.command("show")
@click.argument("job_id", type=RECORD_ID)
@database_option
def jobs_show(job_id: int, database_url: str | None) -> None:
    """Everything recorded about one job."""
    from sqlalchemy.orm import Session

    from db import jobs as job_rows
    from gen.jobs import command_line

    with Session(open_db(database_url, create=False, read_only=True)) as session:
        job = job_rows.get_job(session, job_id)
    cancel = " (cancel requested)" if job.cancel_requested and job.status == "running" else ""
    click.echo(f"job {job.id}: {job.status}{cancel}")
    click.echo(f"  command     {command_line(job.arguments)}")
    click.echo(f"  folder      {printable(job.cwd or '-')}")
    click.echo(f"  attempts    {job.attempts}")
    click.echo(
        f"  worker      {printable(job.worker or '-')} on {printable(job.host or '-')}, pid {job.pid or '-'}"
    )
    click.echo(f"  created     {_when(job.created_at)}")
    click.echo(f"  started     {_when(job.started_at)}")
    click.echo(f"  heartbeat   {_when(job.heartbeat_at)}")
    click.echo(f"  finished    {_when(job.finished_at)}")
    click.echo(f"  exit code   {'-' if job.exit_code is None else job.exit_code}")
    click.echo(f"  model       {job.gan_id or '-'}")
    click.echo(f"  log         {printable(job.log_path or '-')}")


@jobs.command("logs")
@click.argument("job_id", type=RECORD_ID)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new output until the job finishes.")
@database_option
def jobs_logs(job_id: int, follow: bool, database_url: str | None) -> None:
    """Print a job's output (on the machine, or shared folder, its worker wrote it to), with
    control characters escaped (a progress bar's carriage returns start new lines)."""
    import socket

    from sqlalchemy.orm import Session

    from db import jobs as job_rows

    engine = open_db(database_url, create=False, read_only=True)
    position, read_from = 0, None
    while True:
        with Session(engine) as session:
            job = job_rows.get_job(session, job_id)
        if job.log_path != read_from:  # another attempt, written elsewhere: from its start
            position, read_from = 0, job.log_path
        if job.log_path and os.path.lexists(job.log_path):
            try:
                with open(job.log_path, encoding="utf-8", errors="replace") as log:  # \r read as \n
                    log.seek(position)
                    text = log.read()
                    position = log.tell()
            except OSError as error:
                raise GenError(
                    f"cannot read job {job_id}'s log {printable(job.log_path)}: {error.strerror}."
                ) from None
            click.echo(printable(text, keep="\n\t"), nl=False)
        elif job.log_path:
            where = printable(job.log_path)
            if job.host == socket.gethostname():
                raise GenError(f"job {job_id}'s log {where} is missing; it was written on this machine.")
            raise GenError(
                f"job {job_id}'s log {where} is on {printable(job.host or '-')}, not on this machine."
            )
        elif not follow:
            click.echo(f"job {job_id} is {job.status} and has no output yet.", err=True)
        if not follow or job.status in job_rows.FINISHED:
            return
        time.sleep(1.0)


@jobs.command("cancel")
@click.argument("job_id", type=RECORD_ID)
@database_option
def jobs_cancel(job_id: int, database_url: str | None) -> None:
    """Cancel a queued job, or stop a running one as Ctrl-C would (training saves a checkpoint)."""
    from sqlalchemy.orm import Session

    from db import jobs as job_rows

    with Session(open_db(database_url, create=False)) as session:
        status = job_rows.request_cancel(session, job_id)
    if status == "cancelled":
        click.echo(f"job {job_id} cancelled")
    else:
        click.echo(f"job {job_id} is stopping: its worker interrupts it at the next heartbeat")


@click.command("worker")
@click.option("--device", help="cpu, cuda, cuda:N, mps or auto, given to every command that takes --device.")
@click.option("--once", is_flag=True, help="Run at most one job, then stop.")
@click.option("--poll", "poll_s", type=click.FloatRange(0.1), default=5.0, show_default=True, help="Seconds.")
@click.option(
    "--heartbeat", "heartbeat_s", type=click.FloatRange(0.1), default=10.0, show_default=True, help="Seconds."
)
@click.option(
    "--stale-after",
    "stale_after_s",
    type=click.FloatRange(1),
    default=120.0,
    show_default=True,
    help="Seconds without a heartbeat after which a running job counts as orphaned and is queued again "
    "(unless its worker still runs on this machine).",
)
@click.option("--log-dir", default="gen-jobs", show_default=True, help="Folder for the jobs' output.")
@name_option("This worker's name [default: host:pid].")
@database_option
def worker(
    device: str | None,
    once: bool,
    poll_s: float,
    heartbeat_s: float,
    stale_after_s: float,
    log_dir: str,
    name: str | None,
    database_url: str | None,
) -> None:
    """Run queued jobs one at a time (one worker per GPU; any machine that reaches the database)."""
    from db import resolve_database_url
    from gen.jobs import WorkerSettings, run_worker

    if heartbeat_s * 2 > stale_after_s:
        raise GenError("--stale-after must be at least twice --heartbeat, or live jobs would be re-queued.")
    if device and device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise GenError(f"--device {device!r} must be cpu, cuda, cuda:N, mps or auto.")
    url = absolute_sqlite_url(resolve_database_url(database_url))
    settings = WorkerSettings(device, poll_s, heartbeat_s, stale_after_s, log_dir, once)
    try:
        ran = run_worker(open_db(url), url, settings, name, say=click.echo)
    except KeyboardInterrupt:
        click.echo("worker stopped; its job (if any) was handed back to the queue", err=True)
        raise SystemExit(130) from None
    click.echo(f"worker ran {ran} job{'s' if ran != 1 else ''}")
