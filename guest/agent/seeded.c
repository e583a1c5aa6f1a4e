/*
 * User programs that seed faults for the guest verdicts: ordinary processes,
 * not the agent's workers, run through `guest-exec` as a user would run theirs.
 *
 * `tcelab-agent lock MIB SECONDS`: mlock()s MIB of memory and keeps it for
 * SECONDS (VmLck of a process that is nothing to VFIO).
 *
 * `tcelab-agent hand-off GROUP MIB SECONDS`: a user's program, not the
 * agent's worker. It opens a VFIO sPAPR TCE v2 container for GROUP, registers
 * MIB of memory, passes its container and group fds over a unix socket
 * (SCM_RIGHTS) to a process it started before opening them, and exits. The
 * receiver keeps them for SECONDS: the container, and the pins, outlive the
 * program that made them. The seeded fault for the guest balance verdict.
 */
#include "agent.h"
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

static int receive_and_hold(int sock, unsigned seconds)
{
	int fds[2];
	if (receive_fds(sock, fds, 2)) {
		perror("hand-off: receiver: recvmsg");
		return 1;
	}
	prctl(PR_SET_NAME, "fd-receiver");
	sleep(seconds);
	return 0;
}

int hand_off_main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: tcelab-agent hand-off GROUP MIB SECONDS\n");
		return 2;
	}
	int group = atoi(argv[2]);
	size_t size = (size_t)atoi(argv[3]) << 20;
	unsigned seconds = (unsigned)atoi(argv[4]);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv)) {
		perror("hand-off: socketpair");
		return 1;
	}
	/* The receiver exists before any VFIO fd does: it can only get them over the socket. */
	pid_t receiver = fork();
	if (receiver == 0) {
		close(sv[0]);
		setsid();
		_exit(receive_and_hold(sv[1], seconds));
	}
	close(sv[1]);
	char path[64];
	snprintf(path, sizeof(path), "/dev/vfio/%d", group);
	int c = open("/dev/vfio/vfio", O_RDWR), g = open(path, O_RDWR);
	if (c < 0 || g < 0 || ioctl(g, VFIO_GROUP_SET_CONTAINER, &c) || ioctl(c, VFIO_SET_IOMMU, VFIO_SPAPR_TCE_v2_IOMMU)) {
		perror("hand-off: open the container");
		kill(receiver, SIGKILL);
		return 1;
	}
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vfio_iommu_spapr_register_memory reg = { .argsz = sizeof(reg), .vaddr = (unsigned long)mem, .size = size };
	if (mem == MAP_FAILED || ioctl(c, VFIO_IOMMU_SPAPR_REGISTER_MEMORY, &reg)) {
		perror("hand-off: register");
		kill(receiver, SIGKILL);
		return 1;
	}
	int fds[2] = { c, g };
	if (send_fds(sv[0], fds, 2)) {
		perror("hand-off: sendmsg");
		kill(receiver, SIGKILL);
		return 1;
	}
	printf("registered %zu MiB in group %d; container and group fds passed to pid %d; exiting\n", size >> 20, group, (int)receiver);
	return 0;
}

int lock_main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: tcelab-agent lock MIB SECONDS\n");
		return 2;
	}
	size_t size = (size_t)atoi(argv[2]) << 20;
	void *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED || mlock(mem, size)) {
		perror("lock: mlock");
		return 1;
	}
	prctl(PR_SET_NAME, "mem-locker");
	sleep((unsigned)atoi(argv[3]));
	return 0;
}
