"""Generates examples/jobs.csv: 54 rows covering every simulator outcome and some bad rows.

The simulator decides from the ID number's sequence code (positions 15-17): see
docs/simulator.md. ID numbers here are synthetic (valid checksums, made-up people).
Run: `python3 examples/make_sample_csv.py`.
"""
import csv
import os

W = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2]
C = "10X98765432"


def idn(region: str, birth: str, seq: str) -> str:
    first = region + birth + seq
    return first + C[sum(int(d) * w for d, w in zip(first, W)) % 11]


SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = ["伟", "芳", "娜", "秀英", "敏", "静", "丽", "强", "磊", "军", "洋", "勇", "艳", "杰", "娟", "涛", "明", "超", "秀兰", "霞"]

rows = []
n = 0


def add(op, seq, face=True, name=None, id_number=None, face_file=None, note=""):
    global n
    n += 1
    name = name if name is not None else SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
    id_number = id_number if id_number is not None else idn("440304", f"19{70 + n % 30:02d}0{1 + n % 9}1{n % 9}", seq)
    face_cell = ""
    if face:
        face_cell = face_file or f"images/faces/face{1 + n % 6:02d}.jpg"
    rows.append({"customer_ref": f"CUST-{n:04d}", "operation": op, "name": name, "id_number": id_number,
                 "mobile": f"138{n:08d}", "face_image": face_cell, "note": note})


# Passes, three-factor and two-factor.
for i in range(18):
    add("huawei.standard", f"{100 + i:03d}", note="pass")
for i in range(8):
    add("huawei.idcard_extension", f"{200 + i:03d}", face=False, note="pass")
# Each documented failure code, twice.
for seq, note in [("901", "2001 identity mismatch"), ("902", "2002 face mismatch"), ("903", "2003 image quality"),
                  ("906", "2006 no ID photo"), ("930", "3001 no record")]:
    add("huawei.standard", seq, note=note)
    add("huawei.standard" if seq != "930" else "huawei.idcard_extension", seq, face=seq != "930", note=note)
add("huawei.idcard_extension", "901", face=False, note="2001 identity mismatch (two-factor)")
# Transient faults that succeed on retry.
add("huawei.standard", "951", note="throttled once (429), then pass")
add("huawei.standard", "952", note="500 once, then pass")
# Vendor refuses: account not subscribed, image too small, image missing from the folder.
add("huawei.standard", "975", note="IVS.0015 not subscribed -> error")
add("huawei.standard", "120", face_file="images/faces/tiny.jpg", note="IVS.0004 image too small -> error")
add("huawei.standard", "121", face_file="images/faces/missing.jpg", note="material missing -> error")
# Bad rows: refused by the producer with a reason in the rejects file.
add("huawei.standard", "130", id_number="440304199001011231", note="bad checksum")
add("huawei.standard", "131", id_number="440304900101123", note="15-digit legacy ID")
add("huawei.standard", "132", name="  ", note="empty name")
add("huawei.standard", "133", face=False, note="no face image")
add("huawei.selfie", "134", note="unknown operation")
rows.append(dict(rows[0], customer_ref="CUST-DUP", note="duplicate of the first row's person"))
add("huawei.idcard_extension", "135", name="张3", face=False, note="digit in name")
# Alibaba and Baidu. A submission in review or an H5 session ends pending: a later CSV of
# alibaba.describe_verify_result / baidu.result_getall rows collects the verdict.
add("alibaba.verify_material", "140", note="pass (the vendor downloads the image from a URL)")
add("alibaba.verify_material", "902", note="VerifyStatus 7 face mismatch")
add("alibaba.submit_verification", "141", note="StatusCode 1 pass")
add("alibaba.submit_verification", "940", note="StatusCode 0 in review -> pending")
add("baidu.start_session", "142", note="H5 session created -> pending (verify_token in vendor_ref)")

with open(os.path.join(os.path.dirname(__file__), "jobs.csv"), "w", newline="", encoding="utf-8") as f:
    w = csv.DictWriter(f, fieldnames=["customer_ref", "operation", "name", "id_number", "mobile", "face_image", "note"])
    w.writeheader()
    w.writerows(rows)
print(len(rows), "rows")
