"""Handoff as the backend of agent frameworks' own human-in-the-loop primitives.

One module per framework, each behind an optional extra of ``kube-handoff``:

- ``handoff.integrations.pydantic_ai`` (``pip install kube-handoff[pydantic-ai]``): a capability
  that files each call of a ``requires_approval=True`` tool and defers it the Pydantic AI way;
- ``handoff.integrations.langgraph`` (``[langgraph]``): ``interrupt()`` with a real checkpointer;
- ``handoff.integrations.openai_agents`` (``[openai-agents]``): tool approvals and ``RunState``.

What they share (``handoff.integrations.core``): the tool call is filed through ``handoff.sdk``
with its arguments, exactly, as parameters; a paused run is kept in the agent's own Redis keys;
a resume worker reads the decision stream and resumes each paused run once every call it waits
for is decided; an approved call runs only with the arguments of the approved request's spec.
See docs/frameworks.md.
"""
