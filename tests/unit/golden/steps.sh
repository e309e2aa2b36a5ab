# a virtual cable: one end stays on the host, the other is born inside the container's network namespace as eth0
ip link add mbx4f1c00000000 type veth peer name eth0 address 02:42:0a:de:00:02 netns /proc/4242/ns/net
# plug the host end into the bridge
ip link set mbx4f1c00000000 master minibox0
# let the bridge send a frame back out of the port it came in on, so a container can reach its own published port through the host
ip link set mbx4f1c00000000 type bridge_slave hairpin on
ip link set mbx4f1c00000000 up
# the container's address, from IPAM
nsenter --net=/proc/4242/ns/net ip addr add 10.222.0.2/24 dev eth0
nsenter --net=/proc/4242/ns/net ip link set eth0 up
# everything not on the bridge's subnet goes via the bridge
nsenter --net=/proc/4242/ns/net ip route add default via 10.222.0.1
# forget its flows
conntrack -D --orig-src 10.222.0.2 || true; conntrack -D --reply-src 10.222.0.2 || true
# its published port
nft -f - <<'EOF'
add element inet minibox hostport-any { tcp . 8080 : 10.222.0.2 . 80 }
EOF
# a /proc of its own
mount -t proc -o nosuid,nodev,noexec proc /c/merged/proc
# seccomp
: seccomp filter from /p.json: 433 rules, 2 BPF instructions, loaded with seccomp(SECCOMP_SET_MODE_FILTER) just before execve
