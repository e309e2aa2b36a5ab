"""Firewall backends: nftables (default) and iptables, both rendered from plan.rules."""
