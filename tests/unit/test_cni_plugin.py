"""The CNI protocol as real runtimes speak it: what containerd's go-cni sends, and a DEL that succeeds whatever it is given."""

import pytest

from minibox.cni import plugin
from minibox.model import PortMapping

ENV = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "c1", "CNI_NETNS": "/run/netns/x", "CNI_IFNAME": "eth0"}


def conf(**kw):
    return {"cniVersion": "1.0.0", "name": "podnet", "type": "minibox-cni", **kw}


def test_containerds_capitalised_port_mappings_are_read_as_portmap_reads_them():
    """containerd 1.6 sends go-cni's struct as it is, with no JSON tags; Go decodes keys
    case-insensitively, so the reference portmap plugin reads these."""
    mappings = [{"HostPort": 18081, "ContainerPort": 80, "Protocol": "tcp", "HostIP": ""},
                {"HostPort": 0, "ContainerPort": 53, "Protocol": "UDP", "HostIP": ""},  # no host port: nothing
                {"hostPort": 9000, "containerPort": 90, "protocol": "udp", "hostIP": "127.0.0.1"}]
    req = plugin.parse(ENV, conf(runtimeConfig={"portMappings": mappings}))
    assert req.ports == (PortMapping("", 18081, 80, "tcp"), PortMapping("127.0.0.1", 9000, 90, "udp"))


@pytest.mark.parametrize("mappings", [[{"HostPort": "x", "ContainerPort": 80}], [{"ContainerPort": 80}], ["junk"],
                                      [{"hostPort": 8080, "containerPort": 80, "protocol": "sctp"}]])
def test_add_refuses_a_mapping_it_cannot_read_and_del_passes_it_over(mappings):
    with pytest.raises(plugin.CniError) as e:
        plugin.parse(ENV, conf(runtimeConfig={"portMappings": mappings}))
    assert e.value.code == plugin.INVALID_CONFIG and "portMappings[0]" in e.value.msg
    req = plugin.parse({**ENV, "CNI_COMMAND": "DEL"}, conf(runtimeConfig={"portMappings": mappings}))
    assert req.command == "DEL" and req.ports == ()


def test_del_finds_its_attachment_by_id_even_from_a_config_it_cannot_use():
    env = {**ENV, "CNI_COMMAND": "DEL"}
    env.pop("CNI_NETNS")  # the namespace may be gone: DEL must still work
    req = plugin.parse(env, {"cniVersion": "1.0.0", "ipam": "broken", "runtimeConfig": [1]})
    assert req.attachment == plugin.parse(ENV, conf()).attachment
