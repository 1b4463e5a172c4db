"""What the framework tests share: the agent's own kubeconfig, a reviewer's, the agent as a real
process, and the tool log each tool call appends to."""

import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from handoff.testing.cluster import Cluster

from .helpers import AGENT, apply_ready_policy, policy

HERE = Path(__file__).parent / "framework_agents"
PLUGIN = str(Path(sys.executable).parent / "kubectl-handoff")


@dataclass
class Setup:
    cluster: Cluster
    namespace: str
    agent_kubeconfig: str
    people_kubeconfig: str
    tool_log: Path
    script: str = ""
    extra_env: dict[str, str] = field(default_factory=dict)
    runs: int = 0

    def run(self, prompt: str) -> dict[str, Any]:
        """One run of the agent on ``prompt`` (its own thread), in a process that then exits."""
        self.runs += 1
        return self.agent(self.script, "run", prompt, f"{self.namespace}-{self.runs}")

    def resume(self) -> dict[str, Any]:
        """The resume worker, in a fresh process, until the decision stream is quiet."""
        return self.agent(self.script, "resume")

    def agent(
        self, script: str, *args: str, extra_env: dict[str, str] | None = None
    ) -> dict[str, Any]:
        """Run the framework's agent script as its own process, to its end; its last line."""
        env = {"NAMESPACE": self.namespace, "AGENT_KUBECONFIG": self.agent_kubeconfig,
               "TOOL_LOG": str(self.tool_log), "PATH": "/usr/bin:/bin", **self.extra_env,
               **(extra_env or {})}  # fmt: skip
        done = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True,
                              text=True, env=env, timeout=120, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        return dict(json.loads(done.stdout.strip().splitlines()[-1]))

    def decide(self, verb: str, name: str, who: str = "alice", comment: str = "") -> None:
        """``kubectl handoff approve|deny NAME`` as a reviewer types it in a script."""
        args = [PLUGIN, "--kubeconfig", self.people_kubeconfig, "--context", who, "-n", self.namespace,
                verb, name, "--comment", comment]  # fmt: skip
        if verb == "approve":
            args += ["--ack", "what,impact,rollback"]
        done = subprocess.run(args, capture_output=True, text=True, check=False, timeout=60)
        assert done.returncode == 0, done.stdout + done.stderr

    def tool_calls(self) -> list[dict[str, Any]]:
        if not self.tool_log.exists():
            return []
        return [json.loads(line) for line in self.tool_log.read_text().splitlines() if line]


def setup(cluster: Cluster, namespace: str, tmp_path: Path) -> Setup:
    apply_ready_policy(cluster, policy(namespace))
    token = cluster.token(f"{namespace}/{AGENT}")
    agent = cluster.control_plane.write_kubeconfig(
        tmp_path / "agent.kubeconfig", {AGENT: token}, namespace
    )
    people = {who: cluster.token(who) for who in ("alice", "bob")}
    reviewers = cluster.control_plane.write_kubeconfig(
        tmp_path / "people.kubeconfig", people, namespace
    )
    return Setup(cluster, namespace, str(agent), str(reviewers), tmp_path / "tools.jsonl")
