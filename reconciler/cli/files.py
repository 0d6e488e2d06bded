"""The commands that read or write the configuration repository's files, never a tenant
(but `dump`, which reads one): `validate`, `dump`, `vars`, and `init` and `schema`, which
start and keep a repository."""

from __future__ import annotations

from pathlib import Path

import click

from reconciler.cli.options import Globals, complete_environments
from reconciler.errors import ConfigError, ExitCode
from reconciler.fsutil import check_output_file


@click.command()
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=complete_environments)
@click.option(
    "--allow-missing-secrets",
    is_flag=True,
    help="Accept unset variables behind credentials (api_key, client_secret, client_id).",
)
@click.pass_obj
def validate(g: Globals, envs: tuple[str, ...], allow_missing_secrets: bool) -> None:
    """Check environment files offline: schema, references, safety of the desired state."""
    from reconciler import api  # lazy: start-up time

    environments = api.load(g.environments_dir, envs, allow_missing_secrets=allow_missing_secrets)
    count = len(environments)
    names = ", ".join(e.name for e in environments)
    click.echo(f"{count} environment{'s' if count != 1 else ''} valid: {names}")
    for env in environments:
        for path, variables in env.secret_urls.items():
            shown = ", ".join(f"${{{name}}}" for name in variables)
            click.echo(
                f"note: {env.where(path)}: {path} has {shown} in its query: the whole url is a "
                "secret (masked in every output, fingerprinted in plan files)"
            )


@click.command()
@click.argument("env", metavar="ENV", shell_complete=complete_environments)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the environment file here instead of printing it.",
)
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@click.option(
    "--store",
    "stores",
    multiple=True,
    metavar="ID",
    help="Also write this store's Associate App document (repeatable; NewStore cannot list "
    "stores).",
)
@click.pass_obj
def dump(g: Globals, env: str, out: Path | None, force: bool, stores: tuple[str, ...]) -> None:
    """Write ENV's live state into its environment file, so that it plans zero changes.

    The file edited is --out when it exists (with --force), else ENV's own file, which supplies
    the tenant and connection (a file with no settings yet is how a tenant is adopted). Its
    extends, comments and ${NAME}s are kept; only what differs from NewStore, and no base file
    says already, is written; a diff shows what changed. Secrets are written as ${...} only.
    """
    # lazy: start-up time
    from reconciler.config import discover
    from reconciler.core.dump import check_out, dump_environment, write_dump
    from reconciler.render.dump import render_dump_diff, render_written

    (source,) = discover(g.environments_dir, [env])
    if out is not None:
        check_out(out, force=force)
    result = dump_environment(source, out=out, stores=stores)
    for warning in result.warnings:
        click.echo(f"Warning: {warning}", err=True)
    for note in result.notes:
        click.echo(f"Note: {note}", err=True)
    if out is None:
        click.echo(result.text, nl=False)
        return
    if result.before is not None:
        click.echo(render_dump_diff(result, out, color=g.color), nl=False)
        if result.before == result.text:
            return  # nothing to write: the file stays as it is, byte for byte
    write_dump(result.text, out, force=force)
    click.echo(render_written(result, out))


@click.command("vars")
@click.argument("envs", nargs=-1, metavar="[ENV]...", shell_complete=complete_environments)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="json follows schemas/vars.schema.json.",
)
@click.pass_obj
def vars_(g: Globals, envs: tuple[str, ...], fmt: str) -> int:
    """List the ${NAME} variables the environments use: where, and whether each is set now.

    Never prints a value. What to export before a run, and the CI secrets to add.
    """
    # lazy: start-up time
    from reconciler.config import discover
    from reconciler.config.variables import report_to_dict, variables_of

    report = variables_of(discover(g.environments_dir, envs))
    if fmt == "json":
        import json  # lazy: start-up time

        click.echo(json.dumps(report_to_dict(report), indent=2))
    else:
        from reconciler.render.variables import render_variables  # lazy: start-up time

        click.echo(render_variables(report), nl=False)
    for broken in report.unresolved:
        problems = "; ".join(str(p) for p in broken.problems)
        click.echo(
            f"Error: {broken.file} cannot be resolved, its variables are unknown: {problems}",
            err=True,
        )
    return ExitCode.ERROR if report.unresolved else ExitCode.OK


# -- starting a configuration repository (init, schema) -----------------------------------------


@click.command()
@click.argument(
    "directory",
    required=False,
    default=Path("."),
    type=click.Path(path_type=Path),
    metavar="[DIR]",
)
@click.option(
    "--ci",
    type=click.Choice(["github", "gitlab", "none"]),
    default="github",
    show_default=True,
    help="Which CI files to add (the recipes of examples/ci).",
)
@click.option(
    "--source",
    metavar="GIT_URL@REF",
    help="Where pipelines and pre-commit install newstore-reconciler from: its git repository "
    "and a tag or commit [default: https://github.com/OWNER/newstore-reconciler@v<version>].",
)
def init(directory: Path, ci: str, source: str | None) -> None:
    """Start a configuration repository in DIR (default: here); never overwrites a file."""
    from reconciler.core.scaffold import (  # lazy: start-up time
        DEFAULT_SOURCE,
        scaffold,
        write_scaffold,
    )

    files = scaffold(ci, source or DEFAULT_SOURCE)
    write_scaffold(directory, files)
    for name in files:
        click.echo(f"  created {directory / name}")
    where = "" if directory == Path(".") else f"cd {directory} && "
    steps = [
        "set `tenant:` in environments/staging.yaml to your staging tenant's name",
        f"{where}reconciler validate --allow-missing-secrets   # offline, no secrets needed",
        "reconciler vars   # the variables to export here and to add as CI secrets"
        # No file names the reconciler's own key, so vars cannot list it; CI needs it.
        + (", and RECONCILER_FINGERPRINT_KEY (`openssl rand -hex 32`)" if ci != "none" else ""),
        "rehearse on a local sandbox: see rehearsal/staging.yaml",
    ]
    # Running init again would refuse to overwrite these files: name them, to edit.
    owner = [name for name, text in files.items() if "OWNER" in text]
    if owner:
        steps.insert(
            0,
            f"replace OWNER in {', '.join(owner)} with the account that hosts your copy of "
            "newstore-reconciler (`init --source GIT_URL@REF` fills it in for a new repository)",
        )
    click.echo("Next:\n" + "\n".join(f"  {i}. {step}" for i, step in enumerate(steps, 1)))


@click.command()
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the schema to this file instead of printing it.",
)
@click.option(
    "--write",
    "write_generated",
    is_flag=True,
    help="Regenerate the schemas made from the settings' declarations (environment, drift) "
    "in --dir.",
)
@click.option(
    "--check",
    is_flag=True,
    help="Exit 1, naming them, when the schemas in --dir differ from the generated ones.",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("schemas"),
    show_default=True,
    help="The repository's schemas directory, for --write and --check.",
)
def schema(out: Path | None, write_generated: bool, check: bool, directory: Path) -> None:
    """Print the environment files' JSON schema (for editors and other tools); --write and
    --check keep the repository's generated schemas in step with the settings."""
    from reconciler.config import schema_gen  # lazy: start-up time

    if write_generated or check:
        if write_generated and check:
            raise ConfigError("schema: give --write or --check, not both")
        if not directory.is_dir():
            raise ConfigError(f"schema: {directory} is not a directory (give --dir)")
        if check:
            names = schema_gen.stale(directory)
            if names:
                raise ConfigError(
                    f"{', '.join(str(directory / n) for n in names)}: differ from the schemas "
                    "the settings generate; run `reconciler schema --write`"
                )
            click.echo(f"{directory}: the generated schemas are up to date.")
            return
        names = schema_gen.write(directory)
        written = ", ".join(str(directory / n) for n in names) or "nothing (up to date)"
        click.echo(f"Wrote {written}.")
        return
    text = schema_gen.generated("environment.schema.json")
    if out is None:
        click.echo(text, nl=False)
        return
    check_output_file(out, "schema", makes_directories=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    click.echo(f"Wrote {out}.")


COMMANDS = (validate, dump, vars_, init, schema)
