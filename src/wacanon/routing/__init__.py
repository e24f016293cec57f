"""Conversations: the identity graph, thread keys, the message index and the lifecycle.

Pure logic only — the store loads what a batch of events needs into a
:class:`~wacanon.routing.state.RoutingState`, :mod:`wacanon.routing.project` applies the
events to it, and the store writes back what changed (``wacanon.store.routing``).
"""
