"""minibox-cni: the CNI plugin (plugin.py the protocol, main.py the verbs)."""
