"""Fixtures of the warehouse tests."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from cinnox import Window
from cinnox.simulator import SimulatorServer

RenamedSender = tuple[str, date, Window]


@pytest.fixture
def renamed_sender(simulator: SimulatorServer) -> RenamedSender:
    """A sim-app-1 WhatsApp sender renamed inside a 20-day window with its campaigns on both
    sides: (phone, renamed on, window)."""
    for sender in simulator.universe.profile("sim-app-1").whatsapp_senders:
        if sender.renamed_on is None or not date(2023, 1, 1) <= sender.renamed_on <= date(2026, 5, 1):
            continue
        middle = datetime.combine(sender.renamed_on, datetime.min.time(), UTC)
        window = Window(middle - timedelta(days=10), middle + timedelta(days=10))
        sent = [
            datetime.fromisoformat(r["date"]) < middle
            for r in simulator.universe.campaigns(
                "sim-app-1", window.start, window.end, window.end + timedelta(days=30)
            )
            if r["sender"]["phone"] == sender.phone
        ]
        if any(sent) and not all(sent):
            return sender.phone, sender.renamed_on, window
    raise AssertionError("the simulator has no renamed sender with campaigns on both sides")
