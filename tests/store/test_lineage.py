"""Lineage is a query: edges child -> parent, walked from any record to its sources."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from keel.store import LineageNode, Store, _tables, lineage


def add_edges(store: Store, edges: list[tuple[tuple[str, str], tuple[str, str], str]]) -> None:
    with store.write() as conn:
        for child, parent, role in edges:
            store.add_edge(conn, child, parent, role)


def edge_count(store: Store) -> int:
    with store.read() as conn:
        return conn.execute(select(func.count()).select_from(_tables.lineage)).scalar_one()


def tree_edges(root: LineageNode) -> list[tuple[tuple[str, str], tuple[str, str], str]]:
    return [
        ((node.kind, node.id), (p.kind, p.id), p.role) for node in root.walk() for p in node.parents
    ]


MODEL_TO_SOURCE = [
    (("model", "churn:1"), ("run", "r1"), "trained_by"),
    (("run", "r1"), ("dataset", "train:3"), "train"),
    (("dataset", "train:3"), ("source", "a" * 64), "ingested_from"),
]


def test_walks_model_to_source(any_store: Store) -> None:
    add_edges(any_store, MODEL_TO_SOURCE)
    tree = lineage(any_store, "model", "churn:1")
    assert [(n.kind, n.id, n.role) for n in tree.walk()] == [
        ("model", "churn:1", ""),
        ("run", "r1", "trained_by"),
        ("dataset", "train:3", "train"),
        ("source", "a" * 64, "ingested_from"),
    ]
    assert tree.to_dict() == {
        "kind": "model",
        "id": "churn:1",
        "role": "",
        "parents": [
            {
                "kind": "run",
                "id": "r1",
                "role": "trained_by",
                "parents": [
                    {
                        "kind": "dataset",
                        "id": "train:3",
                        "role": "train",
                        "parents": [
                            {
                                "kind": "source",
                                "id": "a" * 64,
                                "role": "ingested_from",
                                "parents": [],
                            }
                        ],
                    }
                ],
            }
        ],
    }
    # from the middle, only what is upstream
    assert [n.kind for n in lineage(any_store, "dataset", "train:3").walk()] == [
        "dataset",
        "source",
    ]
    assert lineage(any_store, "source", "a" * 64).parents == []
    assert lineage(any_store, "model", "unknown:9").to_dict()["parents"] == []


def test_several_parents_in_insertion_order(any_store: Store) -> None:
    add_edges(
        any_store,
        [
            (("run", "r1"), ("dataset", "train:1"), "train"),
            (("run", "r1"), ("dataset", "test:1"), "test"),
            (("dataset", "train:1"), ("source", "s"), "ingested_from"),
            (("dataset", "test:1"), ("source", "s"), "ingested_from"),
        ],
    )
    tree = lineage(any_store, "run", "r1")
    assert [(p.id, p.role) for p in tree.parents] == [("train:1", "train"), ("test:1", "test")]
    assert {n.id for n in tree.walk()} == {"r1", "train:1", "test:1", "s"}


def test_duplicate_edge_is_stored_once(any_store: Store) -> None:
    add_edges(any_store, MODEL_TO_SOURCE)
    add_edges(any_store, MODEL_TO_SOURCE + MODEL_TO_SOURCE)
    assert edge_count(any_store) == len(MODEL_TO_SOURCE)
    # the same two records joined in another role is another edge
    add_edges(any_store, [(("run", "r1"), ("dataset", "train:3"), "validation")])
    assert edge_count(any_store) == len(MODEL_TO_SOURCE) + 1


def test_cycles_terminate(any_store: Store) -> None:
    add_edges(
        any_store,
        [
            (("dataset", "a"), ("dataset", "b"), "derived"),
            (("dataset", "b"), ("dataset", "c"), "derived"),
            (("dataset", "c"), ("dataset", "a"), "derived"),
            (("dataset", "c"), ("dataset", "c"), "self"),
        ],
    )
    tree = lineage(any_store, "dataset", "a")
    assert [n.id for n in tree.walk()] == ["a", "b", "c", "a", "c"]
    assert sorted(tree_edges(tree)) == sorted(
        [
            (("dataset", "a"), ("dataset", "b"), "derived"),
            (("dataset", "b"), ("dataset", "c"), "derived"),
            (("dataset", "c"), ("dataset", "a"), "derived"),
            (("dataset", "c"), ("dataset", "c"), "self"),
        ]
    )
    tree.to_dict()  # finite


def test_max_depth_bounds_a_long_chain(store: Store) -> None:
    chain = [(("dataset", str(i)), ("dataset", str(i + 1)), "derived") for i in range(30)]
    add_edges(store, chain)
    assert len(list(lineage(store, "dataset", "0").walk())) == 21  # the root and 20 ancestors
    assert len(list(lineage(store, "dataset", "0", max_depth=5).walk())) == 6
    assert len(list(lineage(store, "dataset", "0", max_depth=100).walk())) == 31


_node = st.tuples(st.sampled_from(["dataset", "run"]), st.sampled_from("abcdef"))


def test_every_reachable_edge_appears_once(tmp_path: Path) -> None:
    """On any graph (cycles, diamonds, self-loops): the tree holds each edge reachable from
    the root exactly once, and nothing else."""
    store = Store.open(f"sqlite:///{tmp_path}/store.db", tmp_path / "blobs")
    counter = iter(range(10**9))

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        edges=st.lists(st.tuples(_node, _node, st.sampled_from(["train", "test"])), max_size=25),
        root=_node,
    )
    def prop(edges, root) -> None:  # type: ignore[no-untyped-def]
        ns = f"g{next(counter)}/"  # each example its own graph in the one store
        edges = [((c[0], ns + c[1]), (p[0], ns + p[1]), r) for c, p, r in edges]
        root = (root[0], ns + root[1])
        add_edges(store, edges)
        unique = set(edges)
        reachable, todo = {root}, [root]
        while todo:
            node = todo.pop()
            for c, p, _ in unique:
                if c == node and p not in reachable:
                    reachable.add(p)
                    todo.append(p)
        expected = sorted(e for e in unique if e[0] in reachable)
        tree = lineage(store, *root, max_depth=100)
        assert sorted(tree_edges(tree)) == expected

    try:
        prop()
    finally:
        store.close()


def test_same_edge_from_two_concurrent_writers_is_stored_once(any_store: Store) -> None:
    """Two pipeline steps may record the same edge at once; neither may fail for it."""
    edge = (("dataset", "train:1"), ("source", "s"), "ingested_from")
    inserted = threading.Event()
    errors: list[BaseException] = []

    def first() -> None:
        try:
            with any_store.write() as conn:
                any_store.add_edge(conn, *edge)
                inserted.set()
                time.sleep(0.3)  # the second writer adds the same edge meanwhile
        except BaseException as exc:
            errors.append(exc)
            inserted.set()

    def second() -> None:
        inserted.wait()
        try:
            add_edges(any_store, [edge])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    assert edge_count(any_store) == 1
