"""Checks of scripts/test.d/gateway.sh's answers, independent of the gateway's own checks.

- The anomalies are recomputed here from the raw SQLite rows with the documented
  thresholds (temperature outside 16-28 C for >= 15 min, humidity outside 25-70 % for
  >= 30 min, runs of consecutive 5-minute readings) and must equal find_anomalies' rooms.
- The answer must name exactly those rooms (by id or a common Chinese name).
- Every number in the answer must appear in some tool result of that question.
- The fault-free day must be answered "none".
"""
import json
import re
import sqlite3
import sys

ROOMS = {
    "living_room": ["living_room", "living room", "客厅"],
    "bedroom": ["bedroom", "卧室", "主卧"],
    "bathroom": ["bathroom", "浴室", "卫生间", "洗手间"],
    "kitchen": ["kitchen", "厨房"],
    "office": ["office", "书房", "办公室"],
}
LIMITS = {"temperature": (16.0, 28.0, 15), "humidity": (25.0, 70.0, 30)}
NUM = re.compile(r"\d+(?:\.\d+)?")


def recompute(db):
    rows = sqlite3.connect(db).execute("select room, metric, ts, value from readings order by room, metric, ts").fetchall()
    series = {}
    for room, metric, ts, value in rows:
        series.setdefault((room, metric), []).append((ts, value))
    found = set()
    for (room, metric), s in series.items():
        low, high, minutes = LIMITS[metric]
        run = 0
        for _, v in s:
            run = run + 1 if (v > high or v < low) else 0
            if run * 5 >= minutes:
                found.add(room)
    return found


def named(text):
    t = text.lower()
    out = set()
    for room, aliases in ROOMS.items():
        for a in aliases:
            if re.search(r"(?<![a-z0-9_])" + re.escape(a) + r"(?![a-z0-9_])", t):
                out.add(room)
    return out


def check(path, expected, language):
    rec = json.load(open(path))
    answer = rec["answer"]
    print(f"{language}: {answer!r}")
    print(f"  source: {rec['answer_source']}, model said: {rec['model_answer']!r}")
    print(f"  tool calls: {[(c['name'], c['arguments']) for c in rec['tool_calls']]}, {rec['total_ms'] / 1000:.1f} s")
    results = " ".join(json.dumps(c["result"], ensure_ascii=False) for c in rec["tool_calls"])
    known = {float(x) for x in NUM.findall(results)}
    unknown = [x for x in NUM.findall(answer) if float(x) not in known]
    assert not unknown, f"{path}: numbers not in any tool result: {unknown}"
    assert named(answer) == expected, f"{path}: names {sorted(named(answer))}, expected {sorted(expected)}"
    reported = set()
    for c in rec["tool_calls"]:
        if c["name"] == "find_anomalies":
            reported |= set(c["result"]["abnormal_rooms"])
    assert reported == expected, f"{path}: find_anomalies said {sorted(reported)}, recomputed {sorted(expected)}"
    return rec


def main():
    work = sys.argv[1]
    faults = recompute(f"{work}/faults.db")
    assert faults == {"bedroom", "bathroom"}, faults
    quiet = recompute(f"{work}/quiet.db")
    assert quiet == set(), quiet
    check(f"{work}/ask-en.json", faults, "English")
    check(f"{work}/ask-zh.json", faults, "Chinese")
    rec = check(f"{work}/ask-quiet.json", set(), "fault-free day")
    assert "none" in rec["answer"].lower(), rec["answer"]
    print("gateway answers: grounded, right rooms, 'none' on a quiet day")


if __name__ == "__main__":
    main()
