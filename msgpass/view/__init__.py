"""Seeing a finished trace outside matplotlib figures: the interactive HTML explorer
(html.py), Graphviz DOT text (dot.py) and Jupyter's rich display (notebook.py). Like the
drawings, everything here reads a finished trace or report and changes nothing."""
