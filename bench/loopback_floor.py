# Kernel floor of one small TCP write over loopback on this machine: N
# connected sockets, 130-byte writes round-robin, system CPU time per write
# (user time excluded). The reader (a second process pinned to core 1, as the
# bench client) drains the sockets with epoll; READER=0 leaves them unread.
# Usage: python3 bench/loopback_floor.py   (env N=2000 WRITES=400000 READER=1)
# Talks only to 127.0.0.1 and stops by itself (bounded writes, 120 s reader).
import os, socket, resource, select, sys, time
N = int(os.environ.get("N", 2000)); WRITES = int(os.environ.get("WRITES", 400000))
READER = os.environ.get("READER", "1") == "1"
os.sched_setaffinity(0, {0})
lst = socket.socket(); lst.bind(("127.0.0.1", 0)); lst.listen(4096)
port = lst.getsockname()[1]
r, w = os.pipe()
pid = os.fork()
if pid == 0:
    os.sched_setaffinity(0, {1})
    conns = []
    for _ in range(N):
        c = socket.create_connection(("127.0.0.1", port)); c.setblocking(False); conns.append(c)
    os.write(w, b"x")
    if READER:
        ep = select.epoll()
        for c in conns: ep.register(c.fileno(), select.EPOLLIN)
        byfd = {c.fileno(): c for c in conns}
        got = 0; deadline = time.time() + 120
        while got < WRITES * 130 and time.time() < deadline:
            for fd, _ in ep.poll(1):
                try: got += len(byfd[fd].recv(65536))
                except BlockingIOError: pass
    else:
        time.sleep(30)
    os._exit(0)
os.read(r, 1)
srv = []
for _ in range(N):
    s, _ = lst.accept(); s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1); srv.append(s)
msg = b"x" * 130
time.sleep(0.5)
a = resource.getrusage(resource.RUSAGE_SELF); t0 = time.time()
for i in range(WRITES):
    srv[i % N].send(msg)
    if READER and i % 200 == 199: time.sleep(0.004)   # ~ a publish every 5 ms
b = resource.getrusage(resource.RUSAGE_SELF); t1 = time.time()
print(f"N={N} writes={WRITES} reader={READER} wall={t1-t0:.2f}s sys_us_per_write={(b.ru_stime-a.ru_stime)/WRITES*1e6:.2f} user_us_per_write={(b.ru_utime-a.ru_utime)/WRITES*1e6:.2f}")
os.kill(pid, 9); os.waitpid(pid, 0)
