/*
 * api.h - the whole api/ layer in one include: the error table (errors.h), request parsing and
 * content negotiation (request.h), answer builders (response.h) and base64 (base64.h).
 */
#ifndef TTTD_API_API_H
#define TTTD_API_API_H

#include "api/base64.h"
#include "api/errors.h"
#include "api/request.h"
#include "api/response.h"

#endif
