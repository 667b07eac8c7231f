"""Strip what is not the model from an ONNX file, so the same network always gives the same bytes.

torch.onnx's dynamo exporter records, per node and per value, the Python stack trace that made it (with the
absolute path of the checkout and of site-packages), fx node text and module names; ONNX Runtime's quantizer
adds its own tags. None of it changes what the graph computes, and the paths make a model's bytes (and so its
sha256) depend on the folder it was exported from. `clean_onnx_file` empties every `metadata_props` and
`doc_string` of the model, its graphs (subgraphs too), nodes, inputs, outputs, values and initializers.
Kept: the graph itself, opsets, IR version, and the producer name and version (a version is not a path).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def clean_onnx_file(path: str | Path) -> None:
    """Rewrite the single-file ONNX model at `path` without metadata or doc strings."""
    import onnx

    model = onnx.load(str(path))
    strip_metadata(model)
    onnx.save(model, str(path))


def strip_metadata(model: Any) -> None:
    """Empty every metadata_props and doc_string of an `onnx.ModelProto` in place."""
    _clear(model)
    for function in model.functions:
        _clear(function)
        for node in function.node:
            _strip_node(node)
    _strip_graph(model.graph)


def _strip_graph(graph: Any) -> None:
    _clear(graph)
    for values in (graph.input, graph.output, graph.value_info, graph.initializer, graph.sparse_initializer):
        for value in values:
            _clear(value)
    for node in graph.node:
        _strip_node(node)


def _strip_node(node: Any) -> None:
    import onnx

    _clear(node)
    for attribute in node.attribute:  # control flow (If, Loop, Scan) carries subgraphs in attributes
        attribute.doc_string = ""
        if attribute.type == onnx.AttributeProto.GRAPH:
            _strip_graph(attribute.g)
        for subgraph in attribute.graphs:
            _strip_graph(subgraph)


def _clear(proto: Any) -> None:
    if hasattr(proto, "metadata_props"):
        del proto.metadata_props[:]
    if hasattr(proto, "doc_string"):
        proto.doc_string = ""
