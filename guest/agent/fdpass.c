/* Passing file descriptors over a unix socket (SCM_RIGHTS), one byte of data with them: the foreign holder that gets
 * the container this way, and the seeded hand-off that passes its container and group fds before it exits. */
#include "agent.h"
#include <string.h>
#include <sys/socket.h>

int send_fds(int sock, const int *fds, int n)
{
	char byte = 'f';
	char control[CMSG_SPACE(FDPASS_MAX * sizeof(int))];
	if (n < 1 || n > FDPASS_MAX)
		return -1;
	memset(control, 0, sizeof(control));
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	cm->cmsg_level = SOL_SOCKET;
	cm->cmsg_type = SCM_RIGHTS;
	cm->cmsg_len = CMSG_LEN(n * sizeof(int));
	memcpy(CMSG_DATA(cm), fds, n * sizeof(int));
	return sendmsg(sock, &msg, 0) == 1 ? 0 : -1;
}

int receive_fds(int sock, int *fds, int n)
{
	char byte;
	char control[CMSG_SPACE(FDPASS_MAX * sizeof(int))];
	if (n < 1 || n > FDPASS_MAX)
		return -1;
	struct iovec iov = { &byte, 1 };
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1, .msg_control = control, .msg_controllen = CMSG_SPACE(n * sizeof(int)) };
	if (recvmsg(sock, &msg, 0) != 1)
		return -1;
	struct cmsghdr *cm = CMSG_FIRSTHDR(&msg);
	if (!cm || cm->cmsg_type != SCM_RIGHTS || cm->cmsg_len != CMSG_LEN(n * sizeof(int)))
		return -1;
	memcpy(fds, CMSG_DATA(cm), n * sizeof(int));
	return 0;
}
