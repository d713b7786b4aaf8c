"""Downloads against a real HTTP server on 127.0.0.1: good, corrupt and truncated files."""

import hashlib
import http.server
import io
import pickle
import tarfile
import threading

import numpy as np
import pytest

from labelemb.cli import main
from labelemb.data.download import DownloadError, download_file
from labelemb.data.registry import DATASETS, DatasetSpec, download_dataset, load_dataset

PAYLOAD = bytes(range(256)) * 4000  # ~1 MB, more than one read chunk


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}

    def do_GET(self):  # noqa: N802
        name = self.path.rsplit("/", 1)[-1]
        body = self.files.get(name)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if name.startswith("truncated"):
            # Promise the whole file, send a third of it, then drop the connection.
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 3])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server():
    _Handler.files = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    t = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Handler.files
    httpd.shutdown()
    httpd.server_close()


def _md5(b: bytes) -> str:
    return "md5:" + hashlib.md5(b).hexdigest()


def test_good_file_lands_with_checksum_checked(server, tmp_path):
    url, files = server
    files["good.bin"] = PAYLOAD
    dest = download_file(f"{url}/good.bin", tmp_path / "good.bin",
                         "sha256:" + hashlib.sha256(PAYLOAD).hexdigest(), quiet=True)
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in tmp_path.iterdir()) == ["good.bin"]


def test_corrupt_file_is_rejected_and_nothing_is_left(server, tmp_path):
    url, files = server
    files["data.gz"] = PAYLOAD[:-1] + b"\x00"
    with pytest.raises(DownloadError, match=r"(?i)data\.gz.*corrupt.*run the download again"):
        download_file(f"{url}/data.gz", tmp_path / "data.gz", _md5(PAYLOAD), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_truncated_transfer_is_rejected_and_nothing_is_left(server, tmp_path):
    url, files = server
    files["truncated.gz"] = PAYLOAD
    with pytest.raises(DownloadError, match=r"truncated"):
        download_file(f"{url}/truncated.gz", tmp_path / "truncated.gz", _md5(PAYLOAD), quiet=True)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_gives_a_clear_error(server, tmp_path):
    url, _ = server
    with pytest.raises(DownloadError, match=r"could not download .*nope.*404"):
        download_file(f"{url}/nope", tmp_path / "nope", None, quiet=True)
    assert list(tmp_path.iterdir()) == []


def _cifar10_archive() -> bytes:
    rng = np.random.default_rng(0)
    members = {"batches.meta": {b"label_names": [f"c{i}".encode() for i in range(10)]}}
    for i in range(1, 6):
        members[f"data_batch_{i}"] = {b"labels": [i % 10, 0], b"data":
                                     rng.integers(0, 256, (2, 3072), dtype=np.uint8)}
    members["test_batch"] = {b"labels": [1], b"data": rng.integers(0, 256, (1, 3072), np.uint8)}
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, obj in members.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_dataset_download_unpacks_and_loads(server, tmp_path):
    url, files = server
    archive = _cifar10_archive()
    files["cifar-10-python.tar.gz"] = archive
    spec = DatasetSpec(**{**DATASETS["cifar10"].__dict__,
                          "files": (("cifar-10-python.tar.gz", _md5(archive)),)})
    dest = download_dataset("cifar10", tmp_path / "cifar10", base_url=url, spec=spec,
                            log=lambda m: None)
    ds = load_dataset("cifar10", data_dir=tmp_path)
    assert ds.source == str(dest) and ds.train_x.shape == (10, 3, 32, 32)
    assert ds.class_names[2] == "c2" and ds.test_y.tolist() == [1]
    # A second call finds the verified archive and downloads nothing.
    files.clear()
    download_dataset("cifar10", dest, base_url=url, spec=spec, log=lambda m: None)


def test_cli_download_reports_a_bad_checksum(server, tmp_path, capsys):
    url, files = server
    for fname, _ in DATASETS["fashion-mnist"].files:
        files[fname] = b"not the real file"
    rc = main(["data", "download", "fashion-mnist", "--dir", str(tmp_path / "f"),
               "--base-url", url])
    # The CLI's one error boundary: one stderr line, exit 2, as for any input to fix.
    err = capsys.readouterr().err.splitlines()
    assert rc == 2 and len(err) == 1 and err[0].startswith("labelemb: error: ")
    assert "train-images-idx3-ubyte.gz" in err[0] and "corrupt" in err[0]
    assert not (tmp_path / "f").exists()  # nothing landed: no empty folder left behind


def test_failed_download_removes_only_the_folders_it_made(server, tmp_path, capsys):
    url, files = server
    files.update({fname: b"not the real file" for fname, _ in DATASETS["fashion-mnist"].files})
    rc = main(["data", "download", "fashion-mnist", "--dir", str(tmp_path / "a" / "b" / "c"),
               "--base-url", url])
    assert rc == 2 and not (tmp_path / "a").exists()
    (tmp_path / "mine").mkdir()  # a folder the user made is theirs: kept, even empty
    assert main(["data", "download", "fashion-mnist", "--dir", str(tmp_path / "mine"),
                 "--base-url", url]) == 2
    assert (tmp_path / "mine").is_dir()


def test_a_download_failing_after_a_file_landed_keeps_that_file(server, tmp_path):
    # A verified first file, a corrupt second one: the first stays for the next try.
    url, files = server
    files.update({"one.gz": PAYLOAD, "two.gz": b"not the real file"})
    spec = DatasetSpec(**{**DATASETS["fashion-mnist"].__dict__,
                          "files": (("one.gz", _md5(PAYLOAD)), ("two.gz", _md5(PAYLOAD)))})
    with pytest.raises(DownloadError, match="two.gz"):
        download_dataset("fashion-mnist", tmp_path / "f", base_url=url, spec=spec,
                         log=lambda m: None)
    assert [p.name for p in (tmp_path / "f").iterdir()] == ["one.gz"]


def test_every_argument_of_data_has_a_help_text():
    import argparse

    from labelemb.cli import build_parser

    root = build_parser()
    data = next(a for a in root._actions if isinstance(a, argparse._SubParsersAction)).choices["data"]
    actions = next(a for a in data._actions if isinstance(a, argparse._SubParsersAction))
    for name, parser in actions.choices.items():
        for action in parser._actions:
            assert action.help, (name, action.dest)  # data info --data-dir, download's NAME
    download = " ".join(actions.choices["download"].format_help().split())
    assert "NAME the dataset: one of cifar10, cifar100, fashion-mnist, mnist" in download
