from pykubemark.cluster.processes import shutdown_waves
from pykubemark.cluster.state import Proc


def proc(name: str, pid: int) -> Proc:
    return Proc(name=name, pid=pid, create_time=0.0, argv=[name], log="/dev/null")


def test_clients_stop_before_the_apiserver_and_etcd_last() -> None:
    procs = [proc(n, i) for i, n in enumerate(
        ["hollow", "kube-scheduler", "kube-apiserver", "kube-controller-manager",
         "prometheus", "etcd"])]
    waves = [[p.name for p in wave] for wave in shutdown_waves(procs)]
    assert waves == [["hollow", "kube-scheduler", "kube-controller-manager", "prometheus"],
                     ["kube-apiserver"], ["etcd"]]


def test_no_empty_wave_when_a_server_is_already_gone() -> None:
    waves = shutdown_waves([proc("hollow", 1), proc("etcd", 2)])
    assert [[p.name for p in wave] for wave in waves] == [["hollow"], ["etcd"]]
