"""Kubernetes NetworkPolicy semantics, as pure functions: may this connection be made?

The rules (networking.k8s.io/v1): a pod is isolated for a direction once any policy
that selects it lists that direction in ``policyTypes``; an isolated pod allows a
connection when some rule of some policy selecting it matches the peer and the port.
A connection between two pods needs the source's egress and the destination's ingress;
a connection to an address outside the pods needs only the egress. Within a peer,
``namespaceSelector`` and ``podSelector`` together mean both; a ``podSelector`` alone
means the policy's own namespace; an empty or missing ``from``/``to`` or ``ports``
matches everything.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Pod:
    """A pod as policies see it: namespace, labels, address; the namespace's labels."""

    namespace: str
    labels: Mapping[str, str] = field(default_factory=dict)
    ip: str = "10.244.0.100"
    namespace_labels: Mapping[str, str] | None = None

    def ns_labels(self) -> Mapping[str, str]:
        if self.namespace_labels is not None:
            return self.namespace_labels
        return {"kubernetes.io/metadata.name": self.namespace}


@dataclass(frozen=True)
class Address:
    """A destination that is not a pod (a node-local cache, an object store)."""

    ip: str


def selects(selector: Mapping | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector against labels (``{}`` selects everything)."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        key, operator = expression["key"], expression["operator"]
        values = expression.get("values", [])
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def _peer_matches(peer: Mapping, policy_namespace: str, other: Pod | Address) -> bool:
    if "ipBlock" in peer:
        block = peer["ipBlock"]
        address = ipaddress.ip_address(other.ip)
        if address not in ipaddress.ip_network(block["cidr"]):
            return False
        return not any(address in ipaddress.ip_network(e) for e in block.get("except", []))
    if isinstance(other, Address):
        return False  # pod and namespace selectors match pods only
    if "namespaceSelector" in peer:
        if not selects(peer["namespaceSelector"], other.ns_labels()):
            return False
    elif other.namespace != policy_namespace:
        return False
    return selects(peer.get("podSelector"), other.labels)


def _port_matches(ports: list | None, port: int, protocol: str) -> bool:
    if not ports:
        return True
    for each in ports:
        if each.get("protocol", "TCP") != protocol:
            continue
        if "port" not in each:
            return True
        end = each.get("endPort", each["port"])
        if each["port"] <= port <= end:
            return True
    return False


def _allowed(
    policies: Iterable[dict],
    pod: Pod,
    direction: str,
    other: Pod | Address,
    port: int,
    protocol: str,
) -> bool:
    kind = "ingress" if direction == "Ingress" else "egress"
    peers = "from" if direction == "Ingress" else "to"
    isolated = False
    for policy in policies:
        namespace = policy["metadata"].get("namespace", "")
        spec = policy["spec"]
        types = spec.get("policyTypes") or (
            ["Ingress", "Egress"] if "egress" in spec else ["Ingress"]
        )
        if namespace != pod.namespace or direction not in types:
            continue
        if not selects(spec.get("podSelector"), pod.labels):
            continue
        isolated = True
        for rule in spec.get(kind) or []:
            chosen = rule.get(peers)
            if chosen and not any(_peer_matches(p, namespace, other) for p in chosen):
                continue
            if _port_matches(rule.get("ports"), port, protocol):
                return True
    return not isolated


def allowed(
    policies: Iterable[dict],
    source: Pod,
    destination: Pod | Address,
    port: int,
    protocol: str = "TCP",
) -> bool:
    """Whether ``source`` may connect to ``destination`` on ``port``."""
    policies = [p for p in policies if p["kind"] == "NetworkPolicy"]
    if not _allowed(policies, source, "Egress", destination, port, protocol):
        return False
    if isinstance(destination, Address):
        return True
    return _allowed(policies, destination, "Ingress", source, port, protocol)
