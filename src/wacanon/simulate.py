"""A generator of realistic simulated webhook streams, for demos, tests and load.

Deterministic for a seed: the same ``(count, seed, ...)`` always gives the same bodies,
so a load test or a failing run can be replayed. A stream mixes several shoppers'
accounts, customers known by phone, LID or BSUID, groups, every message kind, statuses
that arrive out of order (``read`` before ``delivered``, a status before its message),
reactions, edits, deletes, group changes, and a share of exact redeliveries — the same
bytes sent again, as providers do when an acknowledgement is slow.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

TEXTS = (
    "Oi! Vocês têm esse tênis no 42? 👟",
    "Qual o prazo de entrega para Campinas?",
    "Bom dia, gostaria de trocar o tamanho do pedido #4821",
    "Aceitam Pix? 💸",
    "Obrigada!! Chegou certinho ❤️",
    "Tem na cor azul-marinho?",
    "Hola, ¿hacen envíos a Montevideo?",
    "Can I pay in installments?",
    "Vou querer 2 unidades, pode separar?",
    "😂😂 perfeito",
)
REPLIES = (
    "Olá! Temos sim, no 42 e no 43. Quer que eu separe?",
    "Entrega em 2 dias úteis 🚚",
    "Claro, aceitamos Pix e cartão em até 6x.",
    "Pedido separado! Segue o link de pagamento.",
)
EMOJIS = ("👍", "❤️", "😂", "🙏", "🔥", "")
MEDIA = {
    "image": ("image/jpeg", "foto-produto.jpg"),
    "video": ("video/mp4", "unboxing.mp4"),
    "audio": ("audio/ogg; codecs=opus", None),
    "document": ("application/pdf", "nota-fiscal.pdf"),
    "sticker": ("image/webp", None),
}
BASE_TIME = 1767225600  # 2026-01-01T00:00:00Z


@dataclass
class _Account:
    account: str
    shopper: str
    customers: list[str]
    groups: list[str]
    sent: list[tuple[str, str]] = field(default_factory=list)  # (message id, customer)
    received: list[tuple[str, str]] = field(default_factory=list)


@dataclass
class SimulationOptions:
    """What to generate. ``redelivery_rate`` is the share of bodies that are exact repeats."""

    count: int = 100
    seed: int = 0
    shoppers: int = 3
    customers_per_shopper: int = 20
    groups_per_shopper: int = 2
    redelivery_rate: float = 0.1


class _Stream:
    def __init__(self, options: SimulationOptions) -> None:
        self.rng = random.Random(options.seed)
        self.options = options
        self.clock = BASE_TIME + options.seed % 10_000
        self.serial = 0
        self.accounts = [self._account(i) for i in range(max(1, options.shoppers))]

    def _account(self, index: int) -> _Account:
        customers = [self._customer() for _ in range(max(1, self.options.customers_per_shopper))]
        groups = [
            f"1203634{self.rng.randrange(10**10, 10**11)}@g.us"
            for _ in range(self.options.groups_per_shopper)
        ]
        return _Account(f"sim-shop-{index + 1}-main", f"shop-{index + 1}", customers, groups)

    def _customer(self) -> str:
        roll = self.rng.random()
        if roll < 0.8:
            return f"55{self.rng.randrange(11, 99)}9{self.rng.randrange(10**7, 10**8)}"
        if roll < 0.9:
            return f"lid:{self.rng.randrange(10**14, 10**15)}"
        return f"bsuid:BR.{self.rng.randrange(10**15, 10**16)}"

    def _id(self) -> str:
        self.serial += 1
        return f"SIM{self.options.seed:04d}{self.serial:08d}{self.rng.randrange(16**6):06X}"

    def _tick(self) -> int:
        self.clock += self.rng.randrange(1, 30)
        return self.clock

    def inbound(self, acc: _Account) -> dict[str, Any]:
        kind = self.rng.choices(
            ("text", "image", "audio", "video", "document", "sticker", "location", "interactive"),
            weights=(60, 10, 10, 3, 4, 4, 3, 6),
        )[0]
        customer = self.rng.choice(acc.customers)
        fact: dict[str, Any] = {
            "type": "message",
            "id": self._id(),
            "from": customer,
            "name": self.rng.choice(("Ana", "João", "Márcia", "Zé", "Beatriz 🌸", None)),
            "kind": kind,
            "timestamp": self._tick(),
        }
        if self.rng.random() < 0.15 and acc.groups:
            fact["group"] = self.rng.choice(acc.groups)
        if kind == "text" or kind == "interactive":
            fact["text"] = self.rng.choice(TEXTS)
        elif kind == "location":
            fact["location"] = {"latitude": -23.5613, "longitude": -46.6565, "name": "Av. Paulista"}
        else:
            mime, name = MEDIA[kind]
            fact["media"] = {
                "mime_type": mime,
                "file_name": name,
                "url": f"https://media.example/{self._id()}",
                "size": self.rng.randrange(2_000, 4_000_000),
                "voice": kind == "audio",
            }
        if acc.sent and self.rng.random() < 0.2:
            fact["reply_to"] = self.rng.choice(acc.sent)[0]
        acc.received.append((fact["id"], customer))
        return fact

    def outbound(self, acc: _Account) -> dict[str, Any]:
        customer = self.rng.choice(acc.customers)
        fact: dict[str, Any] = {
            "type": "message",
            "id": self._id(),
            "to": customer,
            "text": self.rng.choice(REPLIES),
            "timestamp": self._tick(),
        }
        acc.sent.append((fact["id"], customer))
        return fact

    def statuses(self, acc: _Account) -> list[dict[str, Any]]:
        """Statuses of one sent message, shuffled: providers skip and reorder them."""
        if not acc.sent:
            return [self.outbound(acc)]
        message_id, customer = self.rng.choice(acc.sent)
        chain = ["sent", "delivered", "read"] if self.rng.random() > 0.03 else ["sent", "failed"]
        facts = [
            {
                "type": "status",
                "message_id": message_id,
                "status": value,
                "recipient": customer,
                "timestamp": self._tick(),
            }
            for value in chain
            if self.rng.random() > 0.15 or value == chain[-1]
        ]
        self.rng.shuffle(facts)
        return facts[: self.rng.randrange(1, len(facts) + 1)]

    def other(self, acc: _Account) -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.4 and acc.received:
            target, customer = self.rng.choice(acc.received)
            return {
                "type": "reaction",
                "id": self._id(),
                "to": customer,
                "target": target,
                "emoji": self.rng.choice(EMOJIS),
                "timestamp": self._tick(),
            }
        if roll < 0.55 and acc.sent:
            target, customer = self.rng.choice(acc.sent)
            return {
                "type": "edit",
                "id": self._id(),
                "to": customer,
                "target": target,
                "text": self.rng.choice(REPLIES) + " (editado)",
                "timestamp": self._tick(),
            }
        if roll < 0.65 and acc.received:
            target, customer = self.rng.choice(acc.received)
            return {
                "type": "delete",
                "from": customer,
                "target": target,
                "scope": "everyone",
                "timestamp": self._tick(),
            }
        if roll < 0.85 and acc.groups:
            action = self.rng.choice(("add", "remove", "promote"))
            return {
                "type": "group",
                "group": self.rng.choice(acc.groups),
                "action": action,
                "participants": [self.rng.choice(acc.customers)],
                "timestamp": self._tick(),
            }
        if roll < 0.95:
            return {
                "type": "call",
                "id": self._id(),
                "from": self.rng.choice(acc.customers),
                "status": "offer",
                "video": self.rng.random() < 0.2,
                "timestamp": self._tick(),
            }
        return {"type": "connection", "state": "open", "timestamp": self._tick()}

    def body(self) -> dict[str, Any]:
        acc = self.rng.choice(self.accounts)
        roll = self.rng.random()
        if roll < 0.5:
            facts = [self.inbound(acc)]
        elif roll < 0.7:
            facts = [self.outbound(acc)]
        elif roll < 0.9:
            facts = self.statuses(acc)
        else:
            facts = [self.other(acc)]
        return {"account": acc.account, "events": facts}


def generate(options: SimulationOptions) -> Iterator[bytes]:
    """Yield ``options.count`` simulated webhook bodies (JSON bytes), redeliveries included."""
    stream = _Stream(options)
    sent: list[bytes] = []
    for _ in range(options.count):
        if sent and stream.rng.random() < options.redelivery_rate:
            body = stream.rng.choice(sent[-50:])
        else:
            body = orjson.dumps(stream.body())
            sent.append(body)
        yield body


def account_shoppers(options: SimulationOptions) -> dict[str, str]:
    """Which shopper owns each simulated account (for configuration examples)."""
    return {f"sim-shop-{i + 1}-main": f"shop-{i + 1}" for i in range(max(1, options.shoppers))}
