/* SPDX-License-Identifier: MIT */
/*
 * Scenario 3's ceiling: libmicrohttpd started the way src/http/server.c
 * starts it (internal polling thread, a pool of --threads workers when more
 * than one, poll(2), the same connection limit and timeout), answering
 * every request with one fixed body read from --body (the bench passes the
 * bytes our GET /basket/{user} answers, so both sides send the same
 * payload). No routing, no JSON, no database: what is left is the cost of
 * libmicrohttpd itself, the most our HTTP layer could do.
 *
 * Prints "listening on PORT" and serves until SIGTERM/SIGINT.
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1 << 20)

static struct MHD_Response *fixed;

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *c, const char *url,
           const char *method, const char *version, const char *upload,
           size_t *upload_size, void **con_cls)
{
	(void)cls;
	(void)url;
	(void)method;
	(void)version;
	(void)upload;
	/* A request body, if any, is read and dropped. */
	if (*con_cls == NULL) {
		*con_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_size != 0) {
		*upload_size = 0;
		return MHD_YES;
	}
	return MHD_queue_response(c, MHD_HTTP_OK, fixed);
}

int
main(int argc, char **argv)
{
	unsigned port = 0, threads = 4;
	const char *body_path = NULL;
	static char body[MAX_BODY];
	size_t body_len = 0;
	unsigned flags =
	    MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC | MHD_USE_ERROR_LOG;
	struct MHD_OptionItem pool[2] = {{MHD_OPTION_END, 0, NULL},
	                                 {MHD_OPTION_END, 0, NULL}};
	const union MHD_DaemonInfo *info;
	struct MHD_Daemon *d;
	struct sockaddr_in sa;
	sigset_t sigs;
	int sig;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (strcmp(argv[i], "--port") == 0) {
			port = (unsigned)atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--threads") == 0) {
			threads = (unsigned)atoi(argv[i + 1]);
		} else if (strcmp(argv[i], "--body") == 0) {
			body_path = argv[i + 1];
		}
	}
	if (threads < 1 || threads > 256 || port > 65535) {
		fprintf(stderr, "usage: mhd_ceiling [--port P] [--threads N] "
		                "[--body FILE]\n");
		return 2;
	}
	if (body_path) {
		FILE *f = fopen(body_path, "rb");

		if (f == NULL) {
			perror(body_path);
			return 1;
		}
		body_len = fread(body, 1, sizeof(body), f);
		fclose(f);
	} else {
		body_len =
		    (size_t)snprintf(body, sizeof(body), "{\"status\":\"ok\"}");
	}
	fixed = MHD_create_response_from_buffer(body_len, body,
	                                        MHD_RESPMEM_PERSISTENT);
	if (fixed == NULL ||
	    MHD_add_response_header(fixed, "Content-Type",
	                            "application/json") != MHD_YES) {
		return 1;
	}
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	/* As src/http/server.c: poll(2), a pool only when more than one. */
	flags |= MHD_is_feature_supported(MHD_FEATURE_POLL) == MHD_YES
	             ? MHD_USE_POLL
	             : MHD_USE_AUTO;
	pool[0].option =
	    threads > 1 ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END;
	pool[0].value = (intptr_t)threads;
	/* Loopback only, as the bench's servers all are. */
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	d = MHD_start_daemon(
	    flags, (uint16_t)port, NULL, NULL, on_request, NULL,
	    MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa, MHD_OPTION_ARRAY,
	    pool, MHD_OPTION_CONNECTION_LIMIT, 1024u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (d == NULL) {
		fprintf(stderr, "mhd_ceiling: cannot listen on port %u\n",
		        port);
		return 1;
	}
	info = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
	printf("listening on %u\n", info ? info->port : port);
	fflush(stdout);
	do {
		if (sigwait(&sigs, &sig) != 0) {
			sig = SIGTERM;
		}
	} while (sig != SIGINT && sig != SIGTERM);
	MHD_stop_daemon(d);
	MHD_destroy_response(fixed);
	return 0;
}
