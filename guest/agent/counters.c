/* The guest's counters: pages pinned and released, memory locked, huge pages, and one process's VmLck/VmPin. */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/if.h>
#include <linux/if_tun.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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

/* The TUN driver, loaded on first use: the image carries it only for the barrier below, and it may be built in. */
static int open_tun(void)
{
	int fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd >= 0 || (errno != ENOENT && errno != ENODEV))
		return fd;
	struct utsname u;
	char path[256];
	uname(&u);
	snprintf(path, sizeof path, "/usr/lib/modules/%s/kernel/drivers/net/tun.ko", u.release);
	int ko = open(path, O_RDONLY | O_CLOEXEC);
	if (ko < 0)
		return -1;
	int rc = syscall(SYS_finit_module, ko, "", 0);
	int err = errno;
	close(ko);
	if (rc && err != EEXIST) {
		errno = err;
		return -1;
	}
	return open("/dev/net/tun", O_RDWR | O_CLOEXEC);
}

/*
 * rcu_barrier() in the guest kernel, from user space: a TUN device that goes with its last fd is unregistered under
 * the RTNL, and rtnl_unlock() runs netdev_run_todo(), which waits for every RCU callback queued so far before it
 * returns (net/core/dev.c: "Wait for rcu callbacks to finish before next phase"), all inside this close(). A
 * registration's pins are put by such a callback (mm_iommu_release() → call_rcu(mm_iommu_free)): after the barrier,
 * a release already set in motion has landed, and the counters read next say what is held for good.
 * Returns the barrier's time in microseconds, or -1 with errno (no TUN in this kernel: ENOENT).
 */
static long long rcu_barrier_us(void)
{
	int fd = open_tun();
	if (fd < 0)
		return -1;
	struct ifreq ifr;
	memset(&ifr, 0, sizeof ifr);
	ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
	snprintf(ifr.ifr_name, sizeof ifr.ifr_name, "tcelabrcu%%d");
	if (ioctl(fd, TUNSETIFF, &ifr)) {
		int err = errno;
		close(fd);
		errno = err;
		return -1;
	}
	struct timespec a, b;
	clock_gettime(CLOCK_MONOTONIC, &a);
	close(fd);
	clock_gettime(CLOCK_MONOTONIC, &b);
	return (b.tv_sec - a.tv_sec) * 1000000LL + (b.tv_nsec - a.tv_nsec) / 1000;
}

enum outcome cmd_counters(const struct request *req, struct reply *r)
{
	const struct jval *args = req->args;
	uint64_t pid = 0;
	bool barrier = false;
	int rc = json_u64(args, "pid", &pid);
	if (rc == -2)
		return bad_arg(r, "pid", rc, "a process id");
	if ((rc = json_bool(args, "rcuBarrier", &barrier)) == -2)
		return bad_arg(r, "rcuBarrier", rc, "true or false");
	long long barrier_us = 0;
	int barrier_err = 0;
	if (barrier && (barrier_us = rcu_barrier_us()) < 0)
		barrier_err = errno;
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
	if (barrier && barrier_err)
		sb_fmt(&r->val, ",\"rcuBarrier\":{\"error\":\"%s\"}", strerror(barrier_err));
	else if (barrier)
		sb_fmt(&r->val, ",\"rcuBarrier\":{\"us\":%lld}", barrier_us);
	sb_raw(&r->val, "}");
	return REPLY_OK;
}
