"""``tomopick particles`` (and, in the io issue, ``convert`` / ``info``)."""

from __future__ import annotations

import typer
from rich.console import Console
from rich.table import Table


def particles(
    preset: str = typer.Argument("czii", help="Built-in set name or a YAML file describing one."),
) -> None:
    """List a particle set: names, radii (Å), CZII scoring weights and labels."""
    from tomopick.data import PRESETS, get_particle_set

    pset = get_particle_set(preset)
    table = Table(title=f"particle set {pset.name!r}" + (" (built-in)" if pset.name in PRESETS else ""))
    for col in ("label", "name", "radius_A", "weight", "pdb_id", "template"):
        table.add_column(col)
    for p in pset:
        table.add_row(str(p.label), p.name, f"{p.radius_A:g}", f"{p.weight:g}", p.pdb_id or "", p.template_path or "")
    Console().print(table)
    typer.echo(f"built-in sets: {', '.join(PRESETS)}")


def register(app: typer.Typer) -> None:
    app.command("particles")(particles)
