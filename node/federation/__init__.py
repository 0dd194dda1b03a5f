"""Federation: peers, live replication, anti-entropy, safe outbound HTTP (spec 0005)."""
