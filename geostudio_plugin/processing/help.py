"""One shape for every GeoStudio algorithm's help: what it does, its inputs, its outputs, an example, and the
README section it links to. Each algorithm gives an ``AlgorithmHelp``; the base class (engine_algorithm) turns it
into ``shortHelpString`` and ``helpUrl``, so the toolbox, the Model Designer and ``qgis_process help`` all say the
same thing and no algorithm writes its own HTML.

A new algorithm (subclass of ``engine_algorithm.EngineAlgorithm``) sets two class attributes and nothing else:
``GROUP_ID = "data"`` (one of ``engine_algorithm.GROUPS``: data, datasets, finetuning, inference) and
``HELP = AlgorithmHelp("what it does", inputs=(("NAME", "what"), ...), outputs=(...),
example=qgis_process_example("its_name", "NAME=value", ...))``. tests/qgis/test_processing_provider.py checks that
every name the help lists, and every one its example sets, is a real parameter or output."""

from __future__ import annotations

from dataclasses import dataclass, field
from html import escape

from ..paths import help_url

#: The README section that lists the algorithms (GitHub's anchor of "### Processing").
SECTION = "processing"


@dataclass(frozen=True)
class AlgorithmHelp:
    """``inputs`` and ``outputs``: (parameter or output name, what it is); ``example``: a ``qgis_process`` line."""

    what: str
    inputs: tuple[tuple[str, str], ...] = ()
    outputs: tuple[tuple[str, str], ...] = ()
    example: str = ""
    section: str = SECTION
    notes: tuple[str, ...] = field(default=())

    def html(self) -> str:
        """The text Processing shows beside the parameters (it renders a small subset of HTML)."""
        parts = [f"<p>{escape(self.what, quote=False)}</p>"]
        parts += [f"<p>{escape(note, quote=False)}</p>" for note in self.notes]
        for title, rows in (("Inputs", self.inputs), ("Outputs", self.outputs)):
            if rows:
                items = "".join(f"<li><b>{escape(name, quote=False)}</b>: {escape(text, quote=False)}</li>"
                                for name, text in rows)
                parts.append(f"<h3>{title}</h3><ul>{items}</ul>")
        if self.example:
            parts.append(f"<h3>Example</h3><p><code>{escape(self.example, quote=False)}</code></p>")
        return "".join(parts)

    def url(self) -> str:
        return help_url(self.section)


def qgis_process_example(algorithm_id: str, *arguments: str) -> str:
    """``qgis_process.bin run geostudio:<id> -- NAME=value ...``: the command that works on Debian's 3.22 (its
    ``qgis_process`` wrapper passes an option 3.22 rejects; see the README)."""
    return " ".join(["qgis_process.bin", "run", f"geostudio:{algorithm_id}", "--", *arguments])
