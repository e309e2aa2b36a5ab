"""Pure code of volumes, users, templates, -P and log times: parsing, resolving, planning."""

import pytest

from minibox.cli import template
from minibox.engine import logs
from minibox.errors import InvalidSpec
from minibox.model import ContainerRecord, ContainerSpec, MountSpec, PortMapping
from minibox.plan import run as runplan
from minibox.plan import mounts, users, volumes
from minibox.plan.ports import publish_exposed
from minibox.plan.steps import MS_RDONLY, CopyUp, MakeDir, Mount, PivotRoot, WriteFile

# --- -v, --mount, --tmpfs ----------------------------------------------------------------------------


@pytest.mark.parametrize("text, want", [
    ("/srv/site:/www:ro", MountSpec("bind", "/srv/site", "/www", True, create_source=True)),
    ("/srv/site/:/www/", MountSpec("bind", "/srv/site", "/www", False, create_source=True)),
    ("data:/var/lib/data", MountSpec("volume", "data", "/var/lib/data")),
    ("data:/d:ro,nocopy", MountSpec("volume", "data", "/d", True, nocopy=True)),
    ("/scratch", MountSpec("volume", "", "/scratch")),
    ("/scratch:ro", MountSpec("volume", "", "/scratch", True)),
])
def test_v_forms(text, want):
    assert volumes.parse_volume(text) == want


@pytest.mark.parametrize("text, message", [
    ("rel/dir:/x", "invalid characters for a local volume name"),
    ("/a:/", "cannot cover the container's root"),
    ("/a:/proc/x", "/proc is the kernel's"),
    ("/a:/sys", "/sys is the kernel's"),
    ("/a:/dev/shm", "/dev is the kernel's"),
    ("/a:/x:rx", 'unknown option "rx"'),
    ("/a:x", "give an absolute path inside the container"),
    ("a:b:c:d", "use /HOST/PATH"),
])
def test_bad_v(text, message):
    with pytest.raises(InvalidSpec, match=message):
        volumes.parse_volume(text)


def test_mount_and_tmpfs_forms():
    assert volumes.parse_mount("type=bind,src=/a,dst=/b,readonly") == MountSpec("bind", "/a", "/b", True)
    assert volumes.parse_mount("type=volume,source=vv,target=/d,volume-nocopy=true") == \
        MountSpec("volume", "vv", "/d", nocopy=True)
    assert volumes.parse_mount("type=tmpfs,target=/run,tmpfs-size=1m") == MountSpec("tmpfs", "", "/run", False,
                                                                                      "size=1m")
    assert volumes.parse_tmpfs("/run:size=64m,mode=1777,noexec") == MountSpec("tmpfs", "", "/run", False,
                                                                              "size=64m,mode=1777,noexec")
    with pytest.raises(InvalidSpec, match="a bind source must be an absolute host path"):
        volumes.parse_mount("type=bind,source=rel,target=/b")
    with pytest.raises(InvalidSpec, match="target= is missing"):
        volumes.parse_mount("type=volume,source=v")
    with pytest.raises(InvalidSpec, match='unknown option "bogus"'):
        volumes.parse_mount("type=volume,target=/x,bogus=1")
    with pytest.raises(InvalidSpec, match='duplicate mount point "/x"'):
        volumes.parse_all(["/a:/x"], ["type=tmpfs,target=/x"], [])


def test_volumes_are_planned_made_copied_and_mounted():
    specs = (MountSpec("volume", "data", "/data", nocopy=False), MountSpec("bind", "/h", "/b", True,
                                                                          create_source=True),
             MountSpec("tmpfs", "", "/run", options="size=1m"), MountSpec("bind", "/there", "/t"))
    made = volumes.plan_create(specs, "/state/volumes", 5.0, present=("/there",))
    assert made[0] == MakeDir("/state/volumes/data/_data", why=made[0].why)
    assert isinstance(made[1], WriteFile) and made[1].if_missing and made[1].path == "/state/volumes/data/meta.json"
    assert made[2].path == "/h" and len(made) == 3  # /there exists: nothing to make
    spec = ContainerSpec(image="i", network="none", read_only=True)
    rec = ContainerRecord(id="c" * 64, name="c", created=5.0, spec=spec, image_layers=("/l/top", "/l/base"),
                          hostname="h", env=(), argv=("sh",), workdir="/app", mounts=specs)
    steps = list(runplan.plan_run(spec, runplan.RunFacts(record=rec, container_dir="/c", host_resolv="",
                                                         seccomp=None, cgroup_dirs=(), cgroup_v2=False,
                                                         volume_root="/state/volumes")).init)
    kinds = [(type(s).__name__, getattr(s, "target", getattr(s, "path", ""))) for s in steps]
    at = [type(s) for s in steps].index(CopyUp)
    assert steps[at] == CopyUp("/c/merged/data", "/state/volumes/data/_data", why=steps[at].why)
    assert steps[at + 1].target == "/c/merged/data" and steps[at + 1].source == "/state/volumes/data/_data"
    ro = [s for s in steps if isinstance(s, Mount) and s.target == "/c/merged/b" and s.flags & MS_RDONLY]
    assert len(ro) == 1
    assert any(isinstance(s, Mount) and s.fstype == "tmpfs" and s.target == "/c/merged/run" and s.data == "size=1m"
               for s in steps)
    assert ("MakeDir", "/c/merged/app") in kinds
    pivot = [type(s) for s in steps].index(PivotRoot)
    root_ro = [s for s in steps if isinstance(s, Mount) and s.target == "/" and s.flags & MS_RDONLY]
    assert len(root_ro) == 1 and steps.index(root_ro[0]) > pivot  # root.readonly: once the root is '/'
    assert steps[1].data == "lowerdir=/l/top:/l/base,upperdir=/c/upper,workdir=/c/work"


def test_a_deep_image_gives_overlay_relative_lowerdirs():
    lower = tuple(f"/var/lib/minibox/images/l/{i:016x}" for i in range(200))
    m = mounts.overlay(mounts.RootfsLayout.for_container(lower, "/c"))
    assert m.cwd == "/var/lib/minibox/images/l" and len(m.data) < 4000 and "/var/lib" not in m.data.split(",")[0]
    assert m.command().startswith("cd /var/lib/minibox/images/l && mount")
    with pytest.raises(InvalidSpec, match="overlayfs stacks at most 500"):
        mounts.overlay(mounts.RootfsLayout.for_container(lower * 3, "/c"))


# --- users ----------------------------------------------------------------------------------------------------

PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n" \
         "app:x:1000:1000::/home/app:/bin/sh\n"
GROUP = "root:x:0:\ntty:x:5:app\nwheel:x:10:root,app\nnogroup:x:65534:\napp:x:1000:\n"


@pytest.mark.parametrize("spec, add, want", [
    ("", (), users.User(0, 0, (10,), "/root", "root")),
    ("app", (), users.User(1000, 1000, (5, 10), "/home/app", "app")),
    ("1000", (), users.User(1000, 1000, (5, 10), "/home/app", "app")),
    ("1000:tty", (), users.User(1000, 5, (10,), "/home/app", "app")),
    ("4242", (), users.User(4242, 0, (), "/", "")),
    ("4242:4343", ("tty", "99"), users.User(4242, 4343, (5, 99), "/", "")),
    ("nobody", ("wheel",), users.User(65534, 65534, (10,), "/nonexistent", "nobody")),
])
def test_users_resolve_as_docker_does(spec, add, want):
    assert users.resolve(spec, add, PASSWD, GROUP) == want


def test_unknown_users_and_groups_get_dockers_messages():
    with pytest.raises(InvalidSpec, match="^unable to find user ghost: no matching entries in passwd file$"):
        users.resolve("ghost", (), PASSWD, GROUP)
    with pytest.raises(InvalidSpec, match="^unable to find group staff: no matching entries in group file$"):
        users.resolve("app:staff", (), PASSWD, GROUP)
    for bad in ("", "a:", ":1", "a b", "a/b"):
        with pytest.raises(InvalidSpec, match="invalid --user"):
            users.validate(bad)


# --- -P ----------------------------------------------------------------------------------------------------------


def test_publish_all_adds_what_is_exposed_and_not_published():
    given = (PortMapping("", 8080, 80),)
    got = publish_exposed(given, ("80/tcp", "443/tcp", "53/udp"))
    assert got == (PortMapping("", 8080, 80), PortMapping("", 0, 443), PortMapping("", 0, 53, "udp"))


# --- templates -----------------------------------------------------------------------------------------------------

DOC = {"Name": "/web", "State": {"Pid": 42, "Running": True}, "Args": ["-f", "-p"], "Labels": {"a": "1", "b": "2"},
       "Mounts": [{"Source": "/x"}, {"Source": "/y"}], "Empty": [], "Nil": None, "Ports": {"80/tcp": [{"HostPort": "8080"}]}}


@pytest.mark.parametrize("fmt, want", [
    ("{{.Name}} {{.State.Pid}} {{.State.Running}}", "/web 42 true"),
    ("{{json .State}}", '{"Pid":42,"Running":true}'),
    ("{{json .Name}}", '"/web"'),
    ("{{range .Mounts}}{{.Source}},{{end}}", "/x,/y,"),
    ("{{range $k, $v := .Labels}}{{$k}}={{$v}};{{end}}", "a=1;b=2;"),
    ("{{range .Empty}}x{{else}}none{{end}}", "none"),
    ('{{index .Labels "b"}} {{index .Args 1}}', "2 -p"),
    ('{{join .Args " "}}', "-f -p"),
    ("{{if .State.Running}}up{{else}}down{{end}}", "up"),
    ("{{.Name | upper}} {{len .Args}}", "/WEB 2"),
    ('{{printf "%s:%d" .Name .State.Pid}}', "/web:42"),
    ("{{.Labels}} {{.Args}} {{.Nil}}", "map[a:1 b:2] [-f -p] <nil>"),
    ('{{(index .Ports "80/tcp")}}', "[map[HostPort:8080]]"),
    ('{{range $p, $conf := .Ports}}{{$p}} -> {{(index $conf 0).HostPort}}{{end}}', "80/tcp -> 8080"),
    ('{{(index (index .Ports "80/tcp") 0).HostPort}}', "8080"),  # the tutorials' form
    ('{{printf "%s=%s" .Name (upper .Name)}} {{join (split "a,b" ",") "+"}}', "/web=/WEB a+b"),
    ("{{lower (upper .Name) | upper}}", "/WEB"),
    ("  {{- .Name -}}  ", "/web"),
])
def test_templates(fmt, want):
    assert template.render(template.parse(fmt), DOC) == want


@pytest.mark.parametrize("bad", ["{{.Name", "{{end}}", "{{range .Args}}", "{{bogus .Name}}", "{{}}", "{{else}}",
                                 "{{(index .Args 1}}", "{{index .Args 1)}}", "{{(bogus .Name)}}"])
def test_malformed_templates_are_refused_at_parse(bad):
    with pytest.raises(InvalidSpec, match="invalid --format"):
        template.parse(bad)


def test_a_missing_field_is_an_error_naming_it():
    with pytest.raises(template.TemplateError, match='map has no entry for key "Nope"'):
        template.render(template.parse("{{.State.Nope}}"), DOC)


def test_table_format_has_a_header():
    f = template.Format("table {{.ID}}\\t{{.Names}}")
    assert f.table and f.header({"ID": "CONTAINER ID"}) == "CONTAINER ID\tNAMES"
    assert f.line({"ID": "abc", "Names": "web"}) == "abc\tweb"


# --- log times -------------------------------------------------------------------------------------------------------


def test_since_forms():
    now = 1_800_000_000.0
    assert logs.parse_since("1700000000", now) == 1_700_000_000.0
    assert logs.parse_since("10m", now) == now - 600
    assert logs.parse_since("1h30m", now) == now - 5400
    assert logs.parse_since("2026-11-26T10:00:00Z", now) == logs.epoch("2026-11-26T10:00:00.000000000Z")
    with pytest.raises(InvalidSpec, match='invalid --since "soon"'):
        logs.parse_since("soon", now)


def test_log_lines_join_partial_records_and_keep_the_first_time():
    joined = logs.Lines()
    out = joined.feed(b"2026-01-01T00:00:01.5Z stdout P hel\n2026-01-01T00:00:02Z stdout F lo\n"
                      b"2026-01-01T00:00:03Z stderr F err\n2026-01-01T00:00:04Z stdout P tail")
    assert out == [("2026-01-01T00:00:01.5Z", "stdout", b"hello\n"), ("2026-01-01T00:00:03Z", "stderr", b"err\n")]
    assert joined.rest() == [("2026-01-01T00:00:04Z", "stdout", b"tail")]
    assert logs.epoch("2026-01-01T00:00:01.5Z") - logs.epoch("2026-01-01T00:00:01Z") == 0.5
