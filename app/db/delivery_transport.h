// The transport the worker loop hands claimed deliveries to, under the name
// app/ has used for it: declared by sender/ (sender/delivery_transport.h),
// with the claim and outcome types (aliased in app/db/delivery_queue.h).
#pragma once

#include "app/db/delivery_queue.h"
#include "sender/delivery_transport.h"

namespace mailer::db {

using DeliveryTransport = sender::DeliveryTransport;

}  // namespace mailer::db
