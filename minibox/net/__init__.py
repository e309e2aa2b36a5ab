"""Effectful network work: links and addresses (pyroute2), firewall rules, sysctls, conntrack."""
