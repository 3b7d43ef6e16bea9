# pprof-breakdown.awk: reads `go tool pprof -traces` output of a CPU profile of
# enginebench -mode nethttp (scripts/bench-engines PROFILE=file) and prints the
# CPU split by net/http part (exclusive: each sample goes to the first part
# that matches its stack, in the order below) and by resource.
function flush_sample(   i, s, part, res) {
	if (n == 0) return
	s = ""
	for (i = 1; i <= n; i++) s = s " " f[i] " "
	if (s ~ /gcBgMarkWorker|runtime\.bgsweep|runtime\.bgscavenge/) part = "GC background workers (gcBgMarkWorker, sweep, scavenge)"
	else if (s ~ /persistConn\)\.writeLoop/) part = "Transport writeLoop goroutine"
	else if (s ~ /persistConn\)\.readLoop/) part = "Transport readLoop goroutine"
	else if (s ~ /net\/http\.\(\*Transport\)\.(roundTrip|RoundTrip)|persistConn\)\.roundTrip|Transport\)\.getConn|Transport\)\.dialConn/) part = "Transport roundTrip (handler side: queue, select, hand-offs)"
	else if (s ~ /connReader\)\.backgroundRead/) part = "server background read goroutine"
	else if (s ~ /conn\)\.readRequest/) part = "server read + parse (conn.readRequest)"
	else if (s ~ /response\)\.finishRequest|chunkWriter|response\)\.(Write|write|Flush|WriteHeader)|http\.checkConnErrorWriter/) part = "server response write (chunkWriter, finishRequest, Flush)"
	else if (s ~ /httputil\.\(\*ReverseProxy\)/) part = "ReverseProxy's own code (Rewrite, header copy, Clone, copyResponse)"
	else if (s ~ / main\./) part = "the prototype's handler (least-connections pick)"
	else if (s ~ /net\/http\.\(\*conn\)\.serve/) part = "server other (conn.serve: state, handler dispatch)"
	else if (s ~ /runtime\.(mcall|schedule|findRunnable|park_m|goexit0|morestack)|runtime\.mstart/) part = "scheduler (findRunnable, park, futex, netpoll)"
	else part = "other (sysmon, timers, listener)"
	if (s ~ / syscall\.write /) res = "write syscalls"
	else if (s ~ / syscall\.read /) res = "read syscalls"
	else if (s ~ /runtime\.netpoll|epollwait/) res = "netpoll (epoll_wait)"
	else if (s ~ /runtime\.futex/) res = "futex (wake/sleep threads)"
	else if (s ~ /runtime\.mallocgc|gcBgMarkWorker|gcAssist|runtime\.bgsweep|runtime\.bgscavenge|runtime\.gcStart|runtime\.gcMarkDone/) res = "allocation + GC (mallocgc, mark, sweep)"
	else if (s ~ /runtime\.(schedule|findRunnable|park_m|goready|ready|runqsteal|wakep|gopark|casgstatus|chansend|chanrecv|selectgo|newproc|gfget|goexit0)/) res = "scheduler + channels (park, ready, select, newproc)"
	else res = "everything else (parsing, header maps, copying)"
	bypart[part] += v; byres[res] += v; total += v
	n = 0
}
/^-+\+-+/ { flush_sample(); next }
/^ +[0-9.]+(ms|s|us|ns) +[^ ]/ {
	flush_sample()
	val = $1
	if (val ~ /ms$/) v = val + 0
	else if (val ~ /us$/) v = (val + 0) / 1000
	else if (val ~ /ns$/) v = (val + 0) / 1e6
	else v = (val + 0) * 1000
	n = 1; f[1] = $2; next
}
/^ +[^ ]/ && n > 0 { f[++n] = $1; next }
END {
	flush_sample()
	printf "total %.0f ms of CPU samples\n\n| net/http part (exclusive) | share of CPU |\n|---|---:|\n", total
	for (p in bypart) printf "%.1f\t| %s | %.1f %% |\n", bypart[p] / total * 100, p, bypart[p] / total * 100 | "sort -rn | cut -f2"
	close("sort -rn | cut -f2")
	printf "\n| resource (exclusive) | share of CPU |\n|---|---:|\n"
	for (p in byres) printf "%.1f\t| %s | %.1f %% |\n", byres[p] / total * 100, p, byres[p] / total * 100 | "sort -rn | cut -f2"
}
