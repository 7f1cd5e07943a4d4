// SPDX-License-Identifier: MIT
//
// Scenario 2's reference: DiscountProtoService (proto/discount.proto) on the
// official gRPC C++ stack (Debian's libgrpc++, the callback API), answering
// GetDiscount from the same in-memory table as bench/bus_bench.c's handler
// (Discount's two seed coupons; the original's zero coupon otherwise). The
// other three methods are left unimplemented (UNIMPLEMENTED), which h2load
// never calls.
//
//   ref_grpc_server --listen 127.0.0.1:PORT
//
// Prints "ready" once listening, serves until SIGTERM/SIGINT, then prints
// how many calls it answered.

#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>

#include "discount.grpc.pb.h"

namespace {

struct Coupon {
	int id;
	const char *name;
	const char *desc;
	int amount;
};

// Discount's seed (src/modules/discount/discount_store.c).
const Coupon kCoupons[] = {
    {1, "IPhone X", "IPhone Discount", 150},
    {2, "Samsung 10", "Samsung Discount", 100},
};

std::atomic<unsigned long> answered{0};

class Service final : public discount::DiscountProtoService::CallbackService
{
	grpc::ServerUnaryReactor *
	GetDiscount(grpc::CallbackServerContext *ctx,
	            const discount::GetDiscountRequest *req,
	            discount::CouponModel *out) override
	{
		const std::string &name = req->productname();
		bool found = false;

		for (const Coupon &c : kCoupons) {
			if (name == c.name) {
				out->set_id(c.id);
				out->set_productname(c.name);
				out->set_description(c.desc);
				out->set_amount(c.amount);
				found = true;
				break;
			}
		}
		if (!found) {
			out->set_id(0);
			out->set_productname("No Discount");
			out->set_description("No Discount Desc");
			out->set_amount(0);
		}
		answered.fetch_add(1, std::memory_order_relaxed);
		grpc::ServerUnaryReactor *r = ctx->DefaultReactor();
		r->Finish(grpc::Status::OK);
		return r;
	}
};

} // namespace

int
main(int argc, char **argv)
{
	std::string listen = "127.0.0.1:50051";
	sigset_t sigs;
	int sig = 0;

	for (int i = 1; i + 1 < argc; i += 2) {
		if (std::strcmp(argv[i], "--listen") == 0) {
			listen = argv[i + 1];
		}
	}
	// Block the stop signals in every thread gRPC starts.
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

	Service service;
	grpc::ServerBuilder builder;
	builder.AddListeningPort(listen, grpc::InsecureServerCredentials());
	builder.RegisterService(&service);
	std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
	if (!server) {
		std::fprintf(stderr, "ref_grpc_server: cannot listen on %s\n",
		             listen.c_str());
		return 1;
	}
	std::printf("ready\n");
	std::fflush(stdout);
	do {
		if (sigwait(&sigs, &sig) != 0) {
			sig = SIGTERM;
		}
	} while (sig != SIGINT && sig != SIGTERM);
	server->Shutdown();
	std::printf("answered %lu\n", answered.load());
	return 0;
}
