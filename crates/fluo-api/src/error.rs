//! The one home of Kurento and JSON-RPC error codes.
//!
//! Every failure a client can see is a [`KurentoError`]: a code from [`ErrorCode`], a message,
//! and (for the codes that KMS sends with one) a `data.type` name. The mapping from code to
//! name is written once, here.

use serde_json::{json, Value};
use std::fmt;

/// Error codes of the Kurento Protocol (JSON-RPC standard codes and Kurento's 40xxx codes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// -32700: the text is not JSON.
    ParseError,
    /// -32600: not a valid JSON-RPC 2.0 request.
    InvalidRequest,
    /// -32601: unknown method.
    MethodNotFound,
    /// -32602: `params` missing or not an object.
    InvalidParams,
    /// -32603: an unexpected internal failure.
    InternalError,
    /// -32000: a required parameter is missing or has the wrong JSON type.
    ServerError,
    /// 40001: a value does not fit its declared type.
    MarshallError,
    /// 40003: unexpected error (unknown complex type and others).
    UnexpectedError,
    /// 40004: element connection failure.
    ConnectError,
    /// 40005: unsupported media type.
    UnsupportedMediaType,
    /// 40006: not implemented.
    NotImplemented,
    /// 40007: unknown session.
    InvalidSession,
    /// 40008: malformed transaction (also unknown operations, as in KMS).
    MalformedTransaction,
    /// 40009: a resource limit was reached.
    NotEnoughResources,
    /// 40100: media object type not found.
    MediaObjectTypeNotFound,
    /// 40101: media object not found.
    MediaObjectNotFound,
    /// 40104: constructor not found.
    MediaObjectConstructorNotFound,
    /// 40105: method not found.
    MediaObjectMethodNotFound,
    /// 40106: event not supported by the object.
    MediaObjectEventNotSupported,
    /// 40107: illegal parameter value.
    MediaObjectIllegalParamError,
    /// 40108: factory not available.
    MediaObjectNotAvailable,
    /// 40109: `newref:` used outside a transaction.
    MediaObjectNotFoundTransactionNoCommit,
    /// 40110: tag key not found.
    MediaObjectTagKeyNotFound,
    /// 40111: operation not supported.
    MediaObjectOperationNotSupported,
    /// 40200: SDP could not be created.
    SdpCreateError,
    /// 40201: SDP could not be parsed.
    SdpParseError,
    /// 40202: no local SDP yet.
    SdpEndPointNoLocalSdpError,
    /// 40203: no remote SDP yet.
    SdpEndPointNoRemoteSdpError,
    /// 40204: offer generation failed.
    SdpEndPointGenerateOfferError,
    /// 40205: offer processing failed.
    SdpEndPointProcessOfferError,
    /// 40206: answer processing failed.
    SdpEndPointProcessAnswerError,
    /// 40207: SDP configuration error.
    SdpConfigurationError,
    /// 40208: already negotiated.
    SdpEndPointAlreadyNegotiated,
    /// 40209: processAnswer without generateOffer.
    SdpEndPointNotOfferGenerated,
    /// 40210: answer already processed.
    SdpEndPointAnswerAlreadyProcessed,
    /// 40211: session could not be created.
    SdpEndPointCannotCreateSession,
    /// 40300: HTTP endpoint registration failed.
    HttpEndPointRegistrationError,
    /// 40400: ICE candidate gathering failed.
    IceGatherCandidatesError,
    /// 40401: adding an ICE candidate failed.
    IceAddCandidateError,
    /// 40500: getKmd of an unknown module.
    ServerManagerErrorKmdNotFound,
    /// 40600: URI path not found.
    UriPathFileNotFound,
    /// 40700: player seek failed.
    PlayerSeekFail,
}

impl ErrorCode {
    /// The numeric code sent on the wire.
    pub const fn code(self) -> i64 {
        use ErrorCode::*;
        match self {
            ParseError => -32700,
            InvalidRequest => -32600,
            MethodNotFound => -32601,
            InvalidParams => -32602,
            InternalError => -32603,
            ServerError => -32000,
            MarshallError => 40001,
            UnexpectedError => 40003,
            ConnectError => 40004,
            UnsupportedMediaType => 40005,
            NotImplemented => 40006,
            InvalidSession => 40007,
            MalformedTransaction => 40008,
            NotEnoughResources => 40009,
            MediaObjectTypeNotFound => 40100,
            MediaObjectNotFound => 40101,
            MediaObjectConstructorNotFound => 40104,
            MediaObjectMethodNotFound => 40105,
            MediaObjectEventNotSupported => 40106,
            MediaObjectIllegalParamError => 40107,
            MediaObjectNotAvailable => 40108,
            MediaObjectNotFoundTransactionNoCommit => 40109,
            MediaObjectTagKeyNotFound => 40110,
            MediaObjectOperationNotSupported => 40111,
            SdpCreateError => 40200,
            SdpParseError => 40201,
            SdpEndPointNoLocalSdpError => 40202,
            SdpEndPointNoRemoteSdpError => 40203,
            SdpEndPointGenerateOfferError => 40204,
            SdpEndPointProcessOfferError => 40205,
            SdpEndPointProcessAnswerError => 40206,
            SdpConfigurationError => 40207,
            SdpEndPointAlreadyNegotiated => 40208,
            SdpEndPointNotOfferGenerated => 40209,
            SdpEndPointAnswerAlreadyProcessed => 40210,
            SdpEndPointCannotCreateSession => 40211,
            HttpEndPointRegistrationError => 40300,
            IceGatherCandidatesError => 40400,
            IceAddCandidateError => 40401,
            ServerManagerErrorKmdNotFound => 40500,
            UriPathFileNotFound => 40600,
            PlayerSeekFail => 40700,
        }
    }

    /// The code whose number is `n`, if it is one of these.
    pub fn from_code(n: i64) -> Option<ErrorCode> {
        use ErrorCode::*;
        const ALL: [ErrorCode; 42] = [
            ParseError,
            InvalidRequest,
            MethodNotFound,
            InvalidParams,
            InternalError,
            ServerError,
            MarshallError,
            UnexpectedError,
            ConnectError,
            UnsupportedMediaType,
            NotImplemented,
            InvalidSession,
            MalformedTransaction,
            NotEnoughResources,
            MediaObjectTypeNotFound,
            MediaObjectNotFound,
            MediaObjectConstructorNotFound,
            MediaObjectMethodNotFound,
            MediaObjectEventNotSupported,
            MediaObjectIllegalParamError,
            MediaObjectNotAvailable,
            MediaObjectNotFoundTransactionNoCommit,
            MediaObjectTagKeyNotFound,
            MediaObjectOperationNotSupported,
            SdpCreateError,
            SdpParseError,
            SdpEndPointNoLocalSdpError,
            SdpEndPointNoRemoteSdpError,
            SdpEndPointGenerateOfferError,
            SdpEndPointProcessOfferError,
            SdpEndPointProcessAnswerError,
            SdpConfigurationError,
            SdpEndPointAlreadyNegotiated,
            SdpEndPointNotOfferGenerated,
            SdpEndPointAnswerAlreadyProcessed,
            SdpEndPointCannotCreateSession,
            HttpEndPointRegistrationError,
            IceGatherCandidatesError,
            IceAddCandidateError,
            ServerManagerErrorKmdNotFound,
            UriPathFileNotFound,
            PlayerSeekFail,
        ];
        ALL.into_iter().find(|c| c.code() == n)
    }

    /// The `data.type` name KMS sends with this code (`UNDEFINED` for codes it has no name for).
    pub const fn type_name(self) -> &'static str {
        use ErrorCode::*;
        match self {
            ParseError => "PARSE_ERROR",
            InvalidRequest => "INVALID_REQUEST",
            MethodNotFound => "METHOD_NOT_FOUND",
            InvalidParams => "INVALID_PARAMS",
            InternalError => "INTERNAL_ERROR",
            ServerError => "SERVER_ERROR",
            MarshallError => "MARSHALL_ERROR",
            UnexpectedError => "UNEXPECTED_ERROR",
            ConnectError => "CONNECT_ERROR",
            UnsupportedMediaType => "UNSUPPORTED_MEDIA_TYPE",
            NotImplemented => "NOT_IMPLEMENTED",
            InvalidSession => "INVALID_SESSION",
            MalformedTransaction => "MALFORMED_TRANSACTION",
            NotEnoughResources => "NOT_ENOUGH_RESOURCES",
            MediaObjectTypeNotFound => "MEDIA_OBJECT_TYPE_NOT_FOUND",
            MediaObjectNotFound => "MEDIA_OBJECT_NOT_FOUND",
            MediaObjectConstructorNotFound => "MEDIA_OBJECT_CONSTRUCTOR_NOT_FOUND",
            MediaObjectMethodNotFound => "MEDIA_OBJECT_METHOD_NOT_FOUND",
            MediaObjectEventNotSupported => "MEDIA_OBJECT_EVENT_NOT_SUPPORTED",
            MediaObjectIllegalParamError => "MEDIA_OBJECT_ILLEGAL_PARAM_ERROR",
            MediaObjectNotAvailable => "MEDIA_OBJECT_NOT_AVAILABLE",
            MediaObjectNotFoundTransactionNoCommit => {
                "MEDIA_OBJECT_NOT_FOUND_TRANSACTION_NO_COMMIT"
            }
            MediaObjectTagKeyNotFound => "MEDIA_OBJECT_TAG_KEY_NOT_FOUND",
            MediaObjectOperationNotSupported => "MEDIA_OBJECT_OPERATION_NOT_SUPPORTED",
            SdpCreateError => "SDP_CREATE_ERROR",
            SdpParseError => "SDP_PARSE_ERROR",
            SdpEndPointNoLocalSdpError => "SDP_END_POINT_NO_LOCAL_SDP_ERROR",
            SdpEndPointNoRemoteSdpError => "SDP_END_POINT_NO_REMOTE_SDP_ERROR",
            SdpEndPointGenerateOfferError => "SDP_END_POINT_GENERATE_OFFER_ERROR",
            SdpEndPointProcessOfferError => "SDP_END_POINT_PROCESS_OFFER_ERROR",
            SdpEndPointProcessAnswerError => "SDP_END_POINT_PROCESS_ANSWER_ERROR",
            SdpConfigurationError => "SDP_CONFIGURATION_ERROR",
            SdpEndPointAlreadyNegotiated => "SDP_END_POINT_ALREADY_NEGOTIATED",
            SdpEndPointNotOfferGenerated => "SDP_END_POINT_NOT_OFFER_GENERATED",
            SdpEndPointAnswerAlreadyProcessed => "SDP_END_POINT_ANSWER_ALREADY_PROCCESED",
            SdpEndPointCannotCreateSession => "SDP_END_POINT_CANNOT_CREATE_SESSON",
            HttpEndPointRegistrationError => "HTTP_END_POINT_REGISTRATION_ERROR",
            IceGatherCandidatesError => "ICE_GATHER_CANDIDATES_ERROR",
            IceAddCandidateError => "ICE_ADD_CANDIDATE_ERROR",
            ServerManagerErrorKmdNotFound => "UNDEFINED",
            UriPathFileNotFound => "URI_PATH_FILE_NOT_FOUND",
            PlayerSeekFail => "PLAYER_SEEK_FAIL",
        }
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
