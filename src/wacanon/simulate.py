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
class _Customer:
    """One customer of a shopper, and how the stream names them so far.

    Most are known by their phone. Some first write under a LID or a BSUID only (Meta
    withholds the number of username users), then once with the phone beside it — the
    pair routing links — and from then on by the phone alone: one conversation, never two.
    """

    phone: str
    alternative: str | None = None  # lid:… or bsuid:…, for those who start without a phone
    uses: int = 0

    #: Uses under the alternative alone before the linking one.
    SWITCH_AFTER = 3

    def spelling(self) -> str:
        self.uses += 1
        if self.alternative is None:
            return self.phone
        if self.uses <= self.SWITCH_AFTER:
            return self.alternative
        if self.uses == self.SWITCH_AFTER + 1:
            return f"{self.phone},{self.alternative}"
        return self.phone


@dataclass
class _Account:
    account: str
    shopper: str
    customers: list[_Customer]
    groups: list[str]
    sent: list[tuple[str, str]] = field(default_factory=list)  # (message id, customer)
    received: list[tuple[str, str]] = field(default_factory=list)
    #: What the stream has put in a conversation so far: customers (by phone), groups.
    spoken_to: set[str] = field(default_factory=set)
    groups_used: set[str] = field(default_factory=set)


@dataclass
class SimulationOptions:
    """What to generate. ``redelivery_rate`` is the share of bodies that are exact repeats."""

    count: int = 100
    seed: int = 0
    shoppers: int = 3
    customers_per_shopper: int = 20
    groups_per_shopper: int = 2
    redelivery_rate: float = 0.1
    #: Numbers of sales agents (an ``[[skms]]`` entry's ``wa_ids``): with some, about a
    #: third of group messages are theirs, so groups get claimed (none: the stream is
    #: exactly what it is without them).
    skm_numbers: tuple[str, ...] = ()


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

    def _customer(self) -> _Customer:
        phone = f"55{self.rng.randrange(11, 99)}9{self.rng.randrange(10**7, 10**8)}"
        roll = self.rng.random()
        if roll < 0.8:
            return _Customer(phone)
        if roll < 0.9:
            return _Customer(phone, f"lid:{self.rng.randrange(10**14, 10**15)}")
        return _Customer(phone, f"bsuid:BR.{self.rng.randrange(10**15, 10**16)}")

    def _private(self, acc: _Account) -> str:
        """A customer for a private fact, named as the stream names them now."""
        customer = self.rng.choice(acc.customers)
        acc.spoken_to.add(customer.phone)
        return customer.spelling()

    def _group(self, acc: _Account) -> str:
        group = self.rng.choice(acc.groups)
        acc.groups_used.add(group)
        return group

    def _id(self) -> str:
        self.serial += 1
        return f"SIM{self.options.seed:04d}{self.serial:08d}{self.rng.randrange(16**6):06X}"

    def _tick(self) -> int:
        self.clock += self.rng.randrange(1, 30)
        if self.rng.random() < 0.002:  # a day of silence: conversations close, then reopen
            self.clock += 25 * 3600
        return self.clock

    def inbound(self, acc: _Account) -> dict[str, Any]:
        kind = self.rng.choices(
            ("text", "image", "audio", "video", "document", "sticker", "location", "interactive"),
            weights=(60, 10, 10, 3, 4, 4, 3, 6),
        )[0]
        in_group = self.rng.random() < 0.15 and bool(acc.groups)
        customer = self.rng.choice(acc.customers).phone if in_group else self._private(acc)
        fact: dict[str, Any] = {
            "type": "message",
            "id": self._id(),
            "from": customer,
            "name": self.rng.choice(("Ana", "João", "Márcia", "Zé", "Beatriz 🌸", None)),
            "kind": kind,
            "timestamp": self._tick(),
        }
        if in_group:
            fact["group"] = self._group(acc)
            skms = self.options.skm_numbers
            if skms and self.rng.random() < 0.35:
                fact["from"], fact["name"] = self.rng.choice(skms), "Vendedora"
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

    def album(self, acc: _Account) -> list[dict[str, Any]]:
        """3 to 10 images (or forwards) from one customer at once, one webhook each, as
        providers send an album — posted concurrently, they must give one conversation."""
        customer = self._private(acc)
        at = self._tick()
        forwarded = self.rng.random() < 0.3
        bodies = []
        for _ in range(self.rng.randrange(3, 11)):
            fact: dict[str, Any] = {
                "type": "message",
                "id": self._id(),
                "from": customer,
                "kind": "image",
                "media": {"mime_type": "image/jpeg", "url": f"https://media.example/{self._id()}"},
                "forwarded": forwarded,
                "timestamp": at,
            }
            acc.received.append((fact["id"], customer))
            bodies.append({"account": acc.account, "events": [fact]})
        return bodies

    def outbound(self, acc: _Account) -> dict[str, Any]:
        customer = self._private(acc)
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
                "group": self._group(acc),
                "action": action,
                "participants": [self.rng.choice(acc.customers).phone],
                "timestamp": self._tick(),
            }
        if roll < 0.95:
            return {
                "type": "call",
                "id": self._id(),
                "from": self._private(acc),
                "status": "offer",
                "video": self.rng.random() < 0.2,
                "timestamp": self._tick(),
            }
        return {"type": "connection", "state": "open", "timestamp": self._tick()}

    def bodies(self) -> list[dict[str, Any]]:
        """The next webhook body — or, for an album, the burst of bodies sent at once."""
        acc = self.rng.choice(self.accounts)
        roll = self.rng.random()
        if roll < 0.02:
            return self.album(acc)
        if roll < 0.5:
            facts = [self.inbound(acc)]
        elif roll < 0.7:
            facts = [self.outbound(acc)]
        elif roll < 0.9:
            facts = self.statuses(acc)
        else:
            facts = [self.other(acc)]
        return [{"account": acc.account, "events": facts}]

    def expected_conversations(self) -> dict[str, int]:
        """Per shopper, the conversations routing must give for what was generated so
        far: one per customer written to or by (whatever ids they used), one per group."""
        return {a.shopper: len(a.spoken_to) + len(a.groups_used) for a in self.accounts}


def generate(options: SimulationOptions) -> Iterator[bytes]:
    """Yield ``options.count`` simulated webhook bodies (JSON bytes), redeliveries included."""
    yield from _generate(_Stream(options))


def _generate(stream: _Stream) -> Iterator[bytes]:
    sent: list[bytes] = []
    pending: list[bytes] = []  # the rest of a burst
    for _ in range(stream.options.count):
        if pending:
            body = pending.pop(0)
        elif sent and stream.rng.random() < stream.options.redelivery_rate:
            body = stream.rng.choice(sent[-50:])
            yield body
            continue
        else:
            first, *rest = (orjson.dumps(b) for b in stream.bodies())
            body, pending = first, rest
        sent.append(body)
        yield body


def expected_conversations(options: SimulationOptions) -> dict[str, int]:
    """Per shopper, how many conversations (not merged away) routing gives for the stream
    ``generate(options)`` yields — the generator knows its customers and groups."""
    stream = _Stream(options)
    for _ in _generate(stream):
        pass
    return stream.expected_conversations()


def account_shoppers(options: SimulationOptions) -> dict[str, str]:
    """Which shopper owns each simulated account (for configuration examples)."""
    return {f"sim-shop-{i + 1}-main": f"shop-{i + 1}" for i in range(max(1, options.shoppers))}
