"""Tests of the summarize (InftyThink) and gated (GRU-Mem) policies; fakes and generators in policyfakes.py."""
