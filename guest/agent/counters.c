/* The guest's counters: pages pinned and released, memory locked, huge pages, and one process's VmLck/VmPin. */
#include "agent.h"
#include <time.h>

/*
 * /proc/vmstat lags the kernel's per-CPU counter deltas until a deferrable
 * timer folds them (about once a second, later on an idle or just-restored
 * guest): nr_foll_pin_released "catches up" late, and a read can be a few
 * pages off. Writing stat_refresh folds them now, so every read the agent
 * serves is exact at the moment it is made.
 */
void fold_vmstat(void)
{
	write_text("/proc/sys/vm/stat_refresh", "1");
}

enum outcome cmd_counters(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	uint64_t pid = 0;
	int rc = json_u64(args, "pid", &pid);
	if (rc == -2)
		return bad_arg(r, "pid", rc, "a process id");
	struct timespec ts;
	fold_vmstat();
	clock_gettime(CLOCK_MONOTONIC, &ts);
	sb_fmt(&r->val,
	       "{\"monotonicNs\":%lld,\"nrFollPinAcquired\":%lld,\"nrFollPinReleased\":%lld,\"mlockedKb\":%lld,"
	       "\"hugePagesTotal\":%lld,\"hugePagesFree\":%lld",
	       (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec,
	       kv_value("/proc/vmstat", "nr_foll_pin_acquired"), kv_value("/proc/vmstat", "nr_foll_pin_released"),
	       kv_value("/proc/meminfo", "Mlocked"), kv_value("/proc/meminfo", "HugePages_Total"), kv_value("/proc/meminfo", "HugePages_Free"));
	if (pid) {
		long long lck = proc_status_kb((pid_t)pid, "VmLck");
		if (lck < 0)
			sb_fmt(&r->val, ",\"process\":{\"pid\":%llu,\"alive\":false}", (unsigned long long)pid);
		else
			sb_fmt(&r->val, ",\"process\":{\"pid\":%llu,\"alive\":true,\"vmLckKb\":%lld,\"vmPinKb\":%lld}",
			       (unsigned long long)pid, lck, proc_status_kb((pid_t)pid, "VmPin"));
	}
	sb_raw(&r->val, "}");
	return REPLY_OK;
}
