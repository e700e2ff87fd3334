// swift-tools-version:6.1
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

let package = Package(
    name: "swift-shop",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "shop", targets: ["shop"]),
        .library(name: "ServiceCore", targets: ["ServiceCore"]),
        .library(name: "ServiceHTTP", targets: ["ServiceHTTP"]),
        .library(name: "ServiceDiscovery", targets: ["ServiceDiscovery"]),
        .library(name: "ServiceDatabase", targets: ["ServiceDatabase"]),
        .library(name: "ServiceAuth", targets: ["ServiceAuth"]),
        .library(name: "ServiceProxy", targets: ["ServiceProxy"]),
        .library(name: "ServiceMessaging", targets: ["ServiceMessaging"]),
        .library(name: "ServiceSaga", targets: ["ServiceSaga"]),
        .library(name: "ServiceResilience", targets: ["ServiceResilience"]),
        .library(name: "ServiceTracing", targets: ["ServiceTracing"]),
        .library(name: "ServiceMail", targets: ["ServiceMail"]),
        .library(name: "ServiceRedis", targets: ["ServiceRedis"]),
        .library(name: "ServiceCache", targets: ["ServiceCache"]),
        .library(name: "ServiceTesting", targets: ["ServiceTesting"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/apple/swift-http-types.git", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/vapor/sql-kit.git", from: "3.36.0"),
        .package(url: "https://github.com/vapor/sqlite-kit.git", from: "4.5.2"),
        .package(url: "https://github.com/vapor/postgres-kit.git", from: "2.17.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/apple/swift-distributed-tracing.git", from: "1.7.3"),
        .package(url: "https://github.com/swiftlang/swift-subprocess.git", from: "1.0.2"),
        .package(url: "https://github.com/apple/swift-system.git", from: "1.8.1"),
    ],
    targets: [
        // MARK: Toolkit (no shop code)
        // The foundation every other module stands on, free of any HTTP server or client: settings, durations and
        // clocks (ServiceResilience), gates and wake-ups, deadlines, correlation and identity, trace context, the health
        // model, JSON values, JSON logs.
        .target(
            name: "ServiceCore",
            dependencies: [
                "ServiceResilience",
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "HTTPTypes", package: "swift-http-types"),
            ],
            swiftSettings: swiftSettings
        ),
        // HTTP services on Hummingbird: the application and its middleware, errors, validation, health and metrics
        // endpoints (Prometheus), pagination.
        .target(
            name: "ServiceHTTP",
            dependencies: [
                "ServiceCore", "ServiceResilience",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // Calling other services: the resilient client (AsyncHTTPClient), the registry (server state, agent, lookup,
        // health monitor) and instance balancing.
        .target(
            name: "ServiceDiscovery",
            dependencies: [
                "ServiceCore", "ServiceResilience",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOFoundationCompat", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceDatabase",
            dependencies: [
                "ServiceCore", "ServiceResilience",
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "SQLiteKit", package: "sqlite-kit"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceAuth",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceCache",
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceProxy",
            dependencies: [
                "ServiceCore",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "NIOExtras", package: "swift-nio-extras"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceMessaging",
            dependencies: [
                "ServiceCore", "ServiceDatabase", "ServiceHTTP", "ServiceCache", "ServiceRedis",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceResilience",
            dependencies: [.product(name: "NIOConcurrencyHelpers", package: "swift-nio")],
            swiftSettings: swiftSettings
        ),
        // Tracing over OTLP/HTTP (a tracer, span batching and a protobuf exporter of its own: see OTLPTracer's comment).
        .target(
            name: "ServiceTracing",
            dependencies: [
                "ServiceCore", "ServiceResilience",
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Instrumentation", package: "swift-distributed-tracing"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        // An SMTP client on SwiftNIO (no Swift SMTP library is available to this project: see SMTPClient's comment).
        .target(
            name: "ServiceMail",
            dependencies: [
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceCache",
            dependencies: [
                "ServiceRedis", "ServiceResilience",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceRedis",
            dependencies: [
                "ServiceResilience",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Tracing", package: "swift-distributed-tracing"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceSaga",
            dependencies: [
                "ServiceCore", "ServiceDatabase", "ServiceResilience",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ServiceTesting",
            dependencies: [
                "ServiceCore", "ServiceDatabase", "ServiceAuth", "ServiceResilience", "ServiceHTTP", "ServiceDiscovery",
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "InMemoryTracing", package: "swift-distributed-tracing"),
                .product(name: "PostgresKit", package: "postgres-kit"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),

        // MARK: The shop
        .target(
            name: "ShopContracts",
            dependencies: ["ServiceCore", "ServiceHTTP", .product(name: "Hummingbird", package: "hummingbird")],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "GatewayService",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceAuth", "ServiceProxy", "ServiceResilience", "ServiceRedis", "ShopContracts",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "AuthService",
            dependencies: [
                "ServiceCore", "ServiceAuth", "ServiceDatabase", "ServiceResilience", "ShopContracts", "ServiceHTTP", "ServiceDiscovery",
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "UserService",
            dependencies: [
                "ServiceCore", "ServiceAuth", "ServiceDatabase", "ServiceMessaging", "ShopContracts", "ServiceHTTP", "ServiceDiscovery",
                .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "InventoryService",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceAuth", "ServiceDatabase", "ServiceMessaging", "ServiceCache",
                "ShopContracts",
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "OrderService",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceAuth", "ServiceDatabase", "ServiceMessaging", "ServiceSaga",
                "ServiceCache", "ShopContracts", .product(name: "Crypto", package: "swift-crypto"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PaymentService",
            dependencies: [
                "ServiceCore", "ServiceAuth", "ServiceDatabase", "ServiceMessaging", "ServiceResilience", "ShopContracts", "ServiceHTTP",
                "ServiceDiscovery",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "PaymentProviderService",
            dependencies: [
                "ServiceCore", "ServiceAuth", "ServiceDatabase", "ShopContracts", "ServiceHTTP", "ServiceDiscovery",
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "SQLKit", package: "sql-kit"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "NotificationService",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceAuth", "ServiceDatabase", "ServiceMail", "ServiceMessaging",
                "ShopContracts",
            ],
            swiftSettings: swiftSettings
        ),
        // What a service process runs: JSON logs, trace export, the registry agent, the watchdog, the service group. Each
        // service's executable is this and its own service module only.
        .target(
            name: "ShopRuntime",
            dependencies: [
                "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceAuth", "ServiceTracing", "ShopContracts",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ],
            swiftSettings: swiftSettings
        ),
        .target(
            name: "ShopSystem",
            dependencies: [
                "ShopRuntime", "GatewayService", "AuthService", "UserService", "InventoryService", "OrderService", "PaymentService",
                "NotificationService", "PaymentProviderService", "ServiceCore", "ServiceHTTP", "ServiceDiscovery", "ServiceDatabase",
                "ServiceResilience",
                .product(name: "SQLKit", package: "sql-kit"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "SystemPackage", package: "swift-system"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(
            name: "shop",
            dependencies: [
                "ShopSystem", "ShopRuntime", "ServiceMail", "ServiceSaga", "ServiceDatabase", "ServiceRedis",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: swiftSettings
        ),
        .executableTarget(name: "gateway-service", dependencies: ["ShopRuntime", "GatewayService"], swiftSettings: swiftSettings),
        .executableTarget(name: "auth-service", dependencies: ["ShopRuntime", "AuthService"], swiftSettings: swiftSettings),
        .executableTarget(name: "user-service", dependencies: ["ShopRuntime", "UserService"], swiftSettings: swiftSettings),
        .executableTarget(name: "inventory-service", dependencies: ["ShopRuntime", "InventoryService"], swiftSettings: swiftSettings),
        .executableTarget(name: "order-service", dependencies: ["ShopRuntime", "OrderService"], swiftSettings: swiftSettings),
        .executableTarget(name: "payment-service", dependencies: ["ShopRuntime", "PaymentService"], swiftSettings: swiftSettings),
        .executableTarget(name: "notification-service", dependencies: ["ShopRuntime", "NotificationService"], swiftSettings: swiftSettings),

        // MARK: Tests
        .testTarget(
            name: "ServiceCoreTests",
            dependencies: [
                "ServiceCore", "ServiceDatabase", "ServiceAuth", "ServiceProxy", "ServiceMessaging", "ServiceSaga", "ServiceResilience",
                "ServiceTesting", "ServiceHTTP", "ServiceDiscovery",
                "ServiceTracing", "ServiceMail", "ServiceRedis", "ServiceCache",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ShopTests",
            dependencies: [
                "ShopSystem", "ServiceTesting",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            swiftSettings: swiftSettings
        ),
    ]
)
