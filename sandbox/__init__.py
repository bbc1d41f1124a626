"""Local simulators of TikTok Shop, Shopify Admin GraphQL, Amazon MCF and ShipBob.

They stand in for the real platforms in the demo, the tests and the benchmarks:
one FastAPI app per platform on its own loopback port, driven by a scenario file
(docs/architecture.md §6) and a controllable clock, recording every write they receive.
"""
