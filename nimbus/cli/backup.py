"""`nimbus backup` and `nimbus restore`: the whole control plane in one private file."""

from __future__ import annotations

from pathlib import Path

import click

from nimbus.cli.doctor import data_dir_option, resolve_data_dir


@click.command()
@click.option("--output", "output_file", required=True, type=click.Path(dir_okay=False),
              help="Archive to write (0600; holds the CA and every key: keep it secret).")
@data_dir_option
def backup(output_file: str, data_dir: str | None, server_config: str | None) -> None:
    """Take a consistent snapshot of the data dir, also while `nimbus serve` runs."""
    from nimbus.server import backup as archive

    source = resolve_data_dir(data_dir, server_config)
    manifest = archive.create(source, Path(output_file))
    click.echo(f"backup of {source} written to {output_file} (0600): "
               f"{archive.describe(manifest)}")


@click.command()
@click.option("--input", "input_file", required=True,
              type=click.Path(dir_okay=False, exists=True), help="Archive from nimbus backup.")
@click.option("--data-dir", required=True, type=click.Path(file_okay=False),
              help="Directory to restore into (new or empty).")
def restore(input_file: str, data_dir: str) -> None:
    """Restore a backup into a new data dir, then check it as `nimbus doctor` does."""
    from nimbus.errors import ConfigError
    from nimbus.server import backup as archive
    from nimbus.server import verify

    manifest = archive.restore(Path(input_file), Path(data_dir))
    problems = verify.findings(Path(data_dir))
    for problem in problems:
        click.echo(f"problem: {problem}")
    if problems:
        raise ConfigError(f"restored into {data_dir}, but it has {len(problems)} problem(s)")
    click.echo(f"restored {archive.describe(manifest)} into {data_dir}; start the server "
               f"with data_dir = {data_dir}")
