"""docs/architecture.md's job state diagram and the transition table agree:
an edge drawn that the table lacks, or a legal move not drawn, fails."""
import pathlib
import re

from pilot.jobs import TRANSITIONS, Phase

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "architecture.md"
EDGE = re.compile(r"^\s*([a-z_]+)\s*-->\s*([a-z_]+)\s*(?::.*)?$")


def drawn_edges():
    text = DOC.read_text()
    diagram = text.split("```mermaid", 1)[1].split("```", 1)[0]
    edges = set()
    for line in diagram.splitlines():
        m = EDGE.match(line)
        if m:
            edges.add((Phase(m.group(1).replace("_", "-")), Phase(m.group(2).replace("_", "-"))))
    return edges


def test_the_state_diagram_is_the_transition_table():
    """Every arrow in the diagram is a legal move, and every legal move is drawn."""
    table = {(a, b) for a, targets in TRANSITIONS.items() for b in targets}
    drawn = drawn_edges()
    assert drawn, "no edges found in the diagram"
    assert drawn - table == set(), "drawn but not legal"
    assert table - drawn == set(), "legal but not drawn"


def test_the_diagram_starts_waiting_and_ends_complete():
    """Life begins waiting and ends complete, as Job.__init__ and _complete have it."""
    text = DOC.read_text()
    assert "[*] --> waiting" in text and "complete --> [*]" in text
