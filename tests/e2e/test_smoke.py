from tests.e2e.conftest import Lab, Node


def test_docker_hub_mirror(node: Node, lab: Lab) -> None:
    report = node.converge(f"""
        version: 1
        registries:
          docker.io:
            mirrors: ["http://{lab.plain.host}"]
        """)
    assert report["restartRequired"]
    assert node.pull("docker.io/library/hello:1") == lab.image("plain", "library/hello:1").id
