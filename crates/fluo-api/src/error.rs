//! The one home of Kurento and JSON-RPC error codes.
//!
//! Every failure a client can see is a [`KurentoError`]: a code from [`ErrorCode`], a message,
//! and (for the codes that KMS sends with one) a `data.type` name. The mapping from code to
//! name is written once, here.

use serde_json::{json, Value};
use std::fmt;

/// Declares [`ErrorCode`] from one table: each variant's documentation, wire number and the
/// `data.type` name KMS sends with it. `code`, `type_name` and `from_code` are generated from
/// the same rows, so a code is written once.
macro_rules! error_codes {
    ($($(#[doc = $doc:literal])* $variant:ident = $code:literal, $name:literal;)+) => {
        /// Error codes of the Kurento Protocol (JSON-RPC standard codes and Kurento's 40xxx codes).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum ErrorCode {
            $($(#[doc = $doc])* $variant,)+
        }

        impl ErrorCode {
            /// Every code, in the catalogue's order.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant,)+];

            /// The numeric code sent on the wire.
            pub const fn code(self) -> i64 {
                match self {
                    $(ErrorCode::$variant => $code,)+
                }
            }

            /// The `data.type` name KMS sends with this code (`UNDEFINED` for codes it has no
            /// name for).
            pub const fn type_name(self) -> &'static str {
                match self {
                    $(ErrorCode::$variant => $name,)+
                }
            }
        }
    };
}

error_codes! {
    /// -32700: the text is not JSON.
    ParseError = -32700, "PARSE_ERROR";
    /// -32600: not a valid JSON-RPC 2.0 request.
    InvalidRequest = -32600, "INVALID_REQUEST";
    /// -32601: unknown method.
    MethodNotFound = -32601, "METHOD_NOT_FOUND";
    /// -32602: `params` missing or not an object.
    InvalidParams = -32602, "INVALID_PARAMS";
    /// -32603: an unexpected internal failure.
    InternalError = -32603, "INTERNAL_ERROR";
    /// -32000: a required parameter is missing or has the wrong JSON type.
    ServerError = -32000, "SERVER_ERROR";
    /// 40001: a value does not fit its declared type.
    MarshallError = 40001, "MARSHALL_ERROR";
    /// 40003: unexpected error (unknown complex type and others).
    UnexpectedError = 40003, "UNEXPECTED_ERROR";
    /// 40004: element connection failure.
    ConnectError = 40004, "CONNECT_ERROR";
    /// 40005: unsupported media type.
    UnsupportedMediaType = 40005, "UNSUPPORTED_MEDIA_TYPE";
    /// 40006: not implemented.
    NotImplemented = 40006, "NOT_IMPLEMENTED";
    /// 40007: unknown session.
    InvalidSession = 40007, "INVALID_SESSION";
    /// 40008: malformed transaction (also unknown operations, as in KMS).
    MalformedTransaction = 40008, "MALFORMED_TRANSACTION";
    /// 40009: a resource limit was reached.
    NotEnoughResources = 40009, "NOT_ENOUGH_RESOURCES";
    /// 40100: media object type not found.
    MediaObjectTypeNotFound = 40100, "MEDIA_OBJECT_TYPE_NOT_FOUND";
    /// 40101: media object not found.
    MediaObjectNotFound = 40101, "MEDIA_OBJECT_NOT_FOUND";
    /// 40104: constructor not found.
    MediaObjectConstructorNotFound = 40104, "MEDIA_OBJECT_CONSTRUCTOR_NOT_FOUND";
    /// 40105: method not found.
    MediaObjectMethodNotFound = 40105, "MEDIA_OBJECT_METHOD_NOT_FOUND";
    /// 40106: event not supported by the object.
    MediaObjectEventNotSupported = 40106, "MEDIA_OBJECT_EVENT_NOT_SUPPORTED";
    /// 40107: illegal parameter value.
    MediaObjectIllegalParamError = 40107, "MEDIA_OBJECT_ILLEGAL_PARAM_ERROR";
    /// 40108: factory not available.
    MediaObjectNotAvailable = 40108, "MEDIA_OBJECT_NOT_AVAILABLE";
    /// 40109: `newref:` used outside a transaction.
    MediaObjectNotFoundTransactionNoCommit = 40109, "MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT";
    /// 40110: tag key not found.
    MediaObjectTagKeyNotFound = 40110, "MEDIA_OBJECT_TAG_KEY_NOT_FOUND";
    /// 40111: operation not supported.
    MediaObjectOperationNotSupported = 40111, "MEDIA_OBJECT_OPERATION_NOT_SUPPORTED";
    /// 40200: SDP could not be created.
    SdpCreateError = 40200, "SDP_CREATE_ERROR";
    /// 40201: SDP could not be parsed.
    SdpParseError = 40201, "SDP_PARSE_ERROR";
    /// 40202: no local SDP yet.
    SdpEndPointNoLocalSdpError = 40202, "SDP_END_POINT_NO_LOCAL_SDP_ERROR";
    /// 40203: no remote SDP yet.
    SdpEndPointNoRemoteSdpError = 40203, "SDP_END_POINT_NO_REMOTE_SDP_ERROR";
    /// 40204: offer generation failed.
    SdpEndPointGenerateOfferError = 40204, "SDP_END_POINT_GENERATE_OFFER_ERROR";
    /// 40205: offer processing failed.
    SdpEndPointProcessOfferError = 40205, "SDP_END_POINT_PROCESS_OFFER_ERROR";
    /// 40206: answer processing failed.
    SdpEndPointProcessAnswerError = 40206, "SDP_END_POINT_PROCESS_ANSWER_ERROR";
    /// 40207: SDP configuration error.
    SdpConfigurationError = 40207, "SDP_CONFIGURATION_ERROR";
    /// 40208: already negotiated.
    SdpEndPointAlreadyNegotiated = 40208, "SDP_END_POINT_ALREADY_NEGOTIATED";
    /// 40209: processAnswer without generateOffer.
    SdpEndPointNotOfferGenerated = 40209, "SDP_END_POINT_NOT_OFFER_GENERATED";
    /// 40210: answer already processed.
    SdpEndPointAnswerAlreadyProcessed = 40210, "SDP_END_POINT_ANSWER_ALREADY_PROCCESED";
    /// 40211: session could not be created.
    SdpEndPointCannotCreateSession = 40211, "SDP_END_POINT_CANNOT_CREATE_SESSON";
    /// 40300: HTTP endpoint registration failed.
    HttpEndPointRegistrationError = 40300, "HTTP_END_POINT_REGISTRATION_ERROR";
    /// 40400: ICE candidate gathering failed.
    IceGatherCandidatesError = 40400, "ICE_GATHER_CANDIDATES_ERROR";
    /// 40401: adding an ICE candidate failed.
    IceAddCandidateError = 40401, "ICE_ADD_CANDIDATE_ERROR";
    /// 40500: getKmd of an unknown module.
    ServerManagerErrorKmdNotFound = 40500, "UNDEFINED";
    /// 40600: URI path not found.
    UriPathFileNotFound = 40600, "URI_PATH_FILE_NOT_FOUND";
    /// 40700: player seek failed.
    PlayerSeekFail = 40700, "PLAYER_SEEK_FAIL";
}

impl ErrorCode {
    /// The code whose number is `n`, if it is one of these.
    pub fn from_code(n: i64) -> Option<ErrorCode> {
        Self::ALL.iter().copied().find(|c| c.code() == n)
    }

    /// Whether KMS attaches `data: {"type": ...}` to errors with this code.
    ///
    /// Kurento codes always carry it; the generic JSON-RPC replies (parse error, invalid
    /// request, method not found, missing or ill-typed parameter) do not.
    pub const fn has_data(self) -> bool {
        use ErrorCode::*;
        !matches!(
            self,
            ParseError | InvalidRequest | MethodNotFound | ServerError | InternalError
        )
    }
}

/// An error as the client sees it: code, message and optional `data.type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KurentoError {
    /// The code.
    pub code: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

impl KurentoError {
    /// Builds an error with a code and a message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
        }
    }

    /// `Object '<id>' not found` (40101).
    pub fn object_not_found(id: &str) -> Self {
        Self::new(
            ErrorCode::MediaObjectNotFound,
            format!("Object '{id}' not found"),
        )
    }

    /// `'<name>' parameter is required` (-32000).
    pub fn param_required(name: &str) -> Self {
        Self::new(
            ErrorCode::ServerError,
            format!("'{name}' parameter is required"),
        )
    }

    /// `'<name>' parameter should be a <kind>` (-32000).
    pub fn param_type(name: &str, kind: &str) -> Self {
        Self::new(
            ErrorCode::ServerError,
            format!("'{name}' parameter should be a {kind}"),
        )
    }

    /// A value that does not fit its declared type (40001).
    pub fn marshall(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MarshallError, message)
    }

    /// `what` failed because of a library (str0m, GStreamer, the OS): the library's reason
    /// in client-safe text (see [`crate::text::foreign`]).
    pub fn foreign(code: ErrorCode, what: &str, e: impl fmt::Display) -> Self {
        Self::new(code, format!("{what}: {}", crate::text::foreign(e)))
    }

    /// A request to an element whose media worker process died (40003): `cause` says how it
    /// ended, as the element's Error event does.
    pub fn media_worker_died(cause: impl fmt::Display) -> Self {
        Self::new(
            ErrorCode::UnexpectedError,
            format!("The media worker hosting this element ended: {cause}"),
        )
    }

    /// A bad argument value (40107).
    pub fn illegal_param(message: impl Into<String>) -> Self {
        Self::new(ErrorCode::MediaObjectIllegalParamError, message)
    }

    /// The JSON `error` member.
    pub fn to_json(&self) -> Value {
        if self.code.has_data() {
            json!({
                "code": self.code.code(),
                "message": self.message,
                "data": {"type": self.code.type_name()},
            })
        } else {
            json!({"code": self.code.code(), "message": self.message})
        }
    }
}

impl fmt::Display for KurentoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.message, self.code.code())
    }
}

impl std::error::Error for KurentoError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_found_by_their_number() {
        for n in [-32700, -32000, 40003, 40107, 40500, 40600, 40700] {
            assert_eq!(ErrorCode::from_code(n).map(ErrorCode::code), Some(n));
        }
        assert_eq!(ErrorCode::from_code(40002), None);
        assert_eq!(ErrorCode::from_code(0), None);
    }

    #[test]
    fn every_code_is_listed_once_and_found_by_its_number() {
        let mut seen = std::collections::HashSet::new();
        for &c in ErrorCode::ALL {
            assert!(seen.insert(c.code()), "{} listed twice", c.code());
            assert_eq!(ErrorCode::from_code(c.code()), Some(c));
            assert!(!c.type_name().is_empty());
        }
        assert_eq!(ErrorCode::ALL.len(), 42);
    }

    #[test]
    fn kurento_codes_carry_their_type_and_generic_ones_do_not() {
        let e = KurentoError::object_not_found("x");
        assert_eq!(
            e.to_json(),
            json!({"code":40101,"message":"Object 'x' not found","data":{"type":"MEDIA_OBJECT_NOT_FOUND"}})
        );
        let e = KurentoError::new(ErrorCode::MethodNotFound, "Method not found.");
        assert_eq!(
            e.to_json(),
            json!({"code":-32601,"message":"Method not found."})
        );
        let e = KurentoError::new(ErrorCode::ServerManagerErrorKmdNotFound, "x");
        assert_eq!(e.to_json()["data"]["type"], "UNDEFINED");
        assert_eq!(
            KurentoError::new(ErrorCode::InvalidParams, "'params' is required").to_json()["data"]
                ["type"],
            "INVALID_PARAMS"
        );
    }
}
