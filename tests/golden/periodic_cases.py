"""Golden case of periodic invoicing (docs/pricing.md §15), computed by hand: a month of four work
orders, one revised inside the period, and the contract's subscription fee on one invoice.

Tenant ``acme`` of :mod:`tests.golden.pricing_cases` (EUR, Europe/Lisbon, VAT 23 %, hvac 42.00/h
cost 24.00, T32 personal 36.00/h cost 21.00, 15-min increment, 60-min minimum, call-out 45.00);
client CLI-1 invoiced monthly under contract AV-1 (fee 150.00 a month, covers the call-out fees).
"""

from __future__ import annotations

from tests.golden.pricing_cases import dur, wo

CONTRACT = {"id": "AV-1", "valid_from": "2026-01-01", "covers": {"call_out_fee": True}, "monthly_fee": "150.00"}


def march_wo(wo_id: str, day: int, entries: list, revision: int = 1) -> dict:
    """A corrective work order of client CLI-1 completed on ``day`` March 2026 at 18:00 UTC."""
    return wo(wo_id=wo_id, revision=revision, entries=entries, time=f"2026-03-{day:02d}T18:00:00+00:00")


#: In publication order; WO 2002 r2 (dated 12 March) replaces r1 inside the open period.
MARCH = [
    march_wo("2001", 3, [dur("TE-1", "T31", 60)]),
    march_wo("2002", 10, [dur("TE-1", "T31", 90)]),
    march_wo("2003", 17, [dur("TE-1", "T32", 40)]),
    march_wo("2004", 24, [dur("TE-1", "T31", 127)]),
    march_wo("2002", 12, [dur("TE-1", "T31", 120)], revision=2),
]

#: The March invoice, lines in time order: (description, net, tax)
#:   WO 2001 call-out covered 0.00; 60 min = 1 h × 42.00 = 42.00, tax 9.66
#:   WO 2002 call-out covered; 120 min = 2 h × 42.00 = 84.00, tax 19.32
#:   WO 2003 call-out covered; T32 40 -> 60 min = 1 h × 36.00 = 36.00, tax 8.28
#:   WO 2004 call-out covered; 127 -> 135 min = 2.25 h × 42.00 = 94.50, tax 21.735 -> 21.74
#:   subscription AV-1 March 150.00, tax 34.50
MARCH_LINES = [
    ("WO 2001: Call-out fee – covered by contract AV-1", "0.00", "0.00"),
    ("WO 2001: Labour – Ana Costa (hvac): 1 h", "42.00", "9.66"),
    ("WO 2002: Call-out fee – covered by contract AV-1", "0.00", "0.00"),
    ("WO 2002: Labour – Ana Costa (hvac): 2 h", "84.00", "19.32"),
    ("WO 2003: Call-out fee – covered by contract AV-1", "0.00", "0.00"),
    ("WO 2003: Labour – Bruno Reis (electrical): 1 h", "36.00", "8.28"),
    ("WO 2004: Call-out fee – covered by contract AV-1", "0.00", "0.00"),
    ("WO 2004: Labour – Ana Costa (hvac): 2.25 h", "94.50", "21.74"),
    ("Subscription, contract AV-1 – March 2026", "150.00", "34.50"),
]
#: net 42.00 + 84.00 + 36.00 + 94.50 + 150.00 = 406.50; tax 9.66 + 19.32 + 8.28 + 21.74 + 34.50 = 93.50
MARCH_TOTALS = ("406.50", "93.50", "500.00")
#: cost on worked time: 60 × 24/60 = 24.00 + 120 × 24/60 = 48.00 + 40 × 21/60 = 14.00 + 127 × 24/60 = 50.80
#: = 136.80; margin 406.50 - 136.80 = 269.70
MARCH_COST_AND_MARGIN = ("136.80", "269.70")
