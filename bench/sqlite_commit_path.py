#!/usr/bin/env python3
# SQLite alone, same schema as migrations/sqlite (minus contentless_delete, which Python's SQLite
# 3.40 lacks), same round sizes as tocsin's group commit: how fast can the commit path be on this
# machine, and what do FTS, the secondary indexes, fsync and the statement shape cost?
# Run: python3 bench/sqlite_commit_path.py   (writes temp databases under /var/tmp, ~3 min)
import sqlite3, json, os, time, sys, tempfile
SCHEMA = """
CREATE TABLE events (seq INTEGER PRIMARY KEY, id BLOB NOT NULL UNIQUE, ts INTEGER NOT NULL, received_at INTEGER NOT NULL,
 kind TEXT NOT NULL, severity INTEGER NOT NULL, user TEXT, fingerprint TEXT NOT NULL, source TEXT NOT NULL, body TEXT NOT NULL);
CREATE INDEX events_by_time ON events (ts, seq);
CREATE INDEX events_by_user ON events (user, ts, seq) WHERE user IS NOT NULL;
CREATE INDEX events_by_kind ON events (kind, ts, seq);
CREATE INDEX events_by_received ON events (received_at);
CREATE VIRTUAL TABLE events_fts USING fts5 (title, text, kind, user, fields, content = '', tokenize = 'unicode61');
"""
CHUNKS=[256,128,64,32,16,8,4,2,1]
def chunked(n):
    out=[]
    for s in CHUNKS:
        while n>=s: out.append(s); n-=s
    return out
def row(n):
    body=json.dumps({"kind":"bench.load","title":f"bench event {n} on host-{n%997}","text":f"disk usage high on host-{n%997} volume data-{n%13}","labels":{"seq":str(n)},"fields":{"usage":n%100}})
    return (n, os.urandom(16), 1700000000000000+n, 1700000000000000+n, "bench.load", 1, None, f"fp{n}", "bench", body,
            f"bench event {n} on host-{n%997}", f"disk usage high on host-{n%997} volume data-{n%13}", "bench load", None, f"usage {n%100}")
def round_chunks(c, rows):
    at=0
    for k in chunked(len(rows)):
        sl=rows[at:at+k]
        c.execute("INSERT INTO events (seq,id,ts,received_at,kind,severity,user,fingerprint,source,body) VALUES "+",".join(["(?,?,?,?,?,?,?,?,?,?)"]*k),[v for r in sl for v in r[:10]])
        c.execute("INSERT INTO events_fts (rowid,title,text,kind,user,fields) VALUES "+",".join(["(?,?,?,?,?,?)"]*k),[v for r in sl for v in (r[0],)+r[10:]])
        at+=k
def round_json(c, rows):
    c.execute("INSERT INTO events (seq,id,ts,received_at,kind,severity,user,fingerprint,source,body) SELECT value->>0, unhex(value->>1), value->>2, value->>3, value->>4, value->>5, value->>6, value->>7, value->>8, value->>9 FROM json_each(?)",
              [json.dumps([[r[0], r[1].hex()]+list(r[2:10]) for r in rows])]) if False else None
    # json ->> needs 3.38 and unhex 3.41; bind ids via executemany-free path: one statement per table using json_each
    c.execute("INSERT INTO events (seq,id,ts,received_at,kind,severity,user,fingerprint,source,body) SELECT json_extract(value,'$[0]'), randomblob(16), json_extract(value,'$[2]'), json_extract(value,'$[3]'), json_extract(value,'$[4]'), json_extract(value,'$[5]'), json_extract(value,'$[6]'), json_extract(value,'$[7]'), json_extract(value,'$[8]'), json_extract(value,'$[9]') FROM json_each(?)",
              [json.dumps([[r[0], None]+list(r[2:10]) for r in rows])])
    c.execute("INSERT INTO events_fts (rowid,title,text,kind,user,fields) SELECT json_extract(value,'$[0]'), json_extract(value,'$[1]'), json_extract(value,'$[2]'), json_extract(value,'$[3]'), json_extract(value,'$[4]'), json_extract(value,'$[5]') FROM json_each(?)",
              [json.dumps([(r[0],)+r[10:] for r in rows])])
def bench(variant, per_round, rounds, prefill):
    d=tempfile.mkdtemp(dir="/var/tmp"); p=d+"/t.db"
    c=sqlite3.connect(p, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA synchronous=FULL"); c.execute("PRAGMA cache_size=-4096"); c.execute("PRAGMA wal_autocheckpoint=4000")
    c.executescript(SCHEMA)
    fn = round_chunks if variant=="chunks" else round_json
    n=1
    c.execute("PRAGMA synchronous=OFF")
    while n<prefill:
        rows=[row(i) for i in range(n,n+4096)]; c.execute("BEGIN IMMEDIATE"); round_chunks(c,rows); c.execute("COMMIT"); n+=4096
    c.execute("PRAGMA synchronous=FULL")
    ts=[]; t0=time.perf_counter()
    for _ in range(rounds):
        rows=[row(i) for i in range(n,n+per_round)]; n+=per_round
        t=time.perf_counter(); c.execute("BEGIN IMMEDIATE"); fn(c,rows); c.execute("COMMIT"); ts.append(time.perf_counter()-t)
    total=time.perf_counter()-t0
    segs=c.execute("SELECT count(*) FROM events_fts_data").fetchone()[0]
    ts.sort()
    print(f"{variant:6} {per_round:5}/round: round p50 {ts[len(ts)//2]*1e3:7.2f} ms  p90 {ts[int(len(ts)*.9)]*1e3:7.2f} ms  -> {per_round*rounds/sum(ts):8.0f} rows/s in the commit path  fts_data rows {segs}")
    c.close(); os.system(f"rm -rf {d}")
import re
def bench2(name, per_round, rounds, prefill, schema, sync, fts=True, automerge=None):
    d=tempfile.mkdtemp(dir="/var/tmp"); p=d+"/t.db"
    c=sqlite3.connect(p, isolation_level=None)
    c.execute("PRAGMA journal_mode=WAL"); c.execute("PRAGMA cache_size=-4096"); c.execute("PRAGMA wal_autocheckpoint=4000")
    c.executescript(schema)
    if automerge: c.execute(f"INSERT INTO events_fts(events_fts, rank) VALUES('automerge', {automerge})")
    def rnd(rows):
        at=0
        for k in chunked(len(rows)):
            sl=rows[at:at+k]
            c.execute("INSERT INTO events (seq,id,ts,received_at,kind,severity,user,fingerprint,source,body) VALUES "+",".join(["(?,?,?,?,?,?,?,?,?,?)"]*k),[v for r in sl for v in r[:10]])
            if fts: c.execute("INSERT INTO events_fts (rowid,title,text,kind,user,fields) VALUES "+",".join(["(?,?,?,?,?,?)"]*k),[v for r in sl for v in (r[0],)+r[10:]])
            at+=k
    n=1; c.execute("PRAGMA synchronous=OFF")
    while n<prefill:
        rows=[row(i) for i in range(n,n+4096)]; c.execute("BEGIN IMMEDIATE"); rnd(rows); c.execute("COMMIT"); n+=4096
    c.execute(f"PRAGMA synchronous={sync}")
    ts=[]
    for _ in range(rounds):
        rows=[row(i) for i in range(n,n+per_round)]; n+=per_round
        t=time.perf_counter(); c.execute("BEGIN IMMEDIATE"); rnd(rows); c.execute("COMMIT"); ts.append(time.perf_counter()-t)
    ts.sort()
    print(f"{name:28} {per_round:5}/round: p50 {ts[len(ts)//2]*1e3:7.2f} ms p90 {ts[int(len(ts)*.9)]*1e3:7.2f} ms -> {per_round*rounds/sum(ts):8.0f} rows/s")
    c.close(); os.system(f"rm -rf {d}")
NOIDX = re.sub(r"CREATE INDEX[^;]*;\n", "", SCHEMA)
for per_round, rounds in [(58, 200), (4096, 12)]:
    for v in ["chunks", "json"]:
        bench(v, per_round, rounds, 100000)
    bench2("full schema, FULL", per_round, rounds, 100000, SCHEMA, "FULL")
    bench2("full schema, sync OFF", per_round, rounds, 100000, SCHEMA, "OFF")
    bench2("no FTS, FULL", per_round, rounds, 100000, SCHEMA, "FULL", fts=False)
    bench2("no 2nd indexes, FULL", per_round, rounds, 100000, NOIDX, "FULL")
    bench2("automerge 16, FULL", per_round, rounds, 100000, SCHEMA, "FULL", automerge=16)
