// A real Java driver through the proxy: pgjdbc (Debian's libpostgresql-jdbc-java) with a JDBC URL.
// Runs a server-side prepared statement (prepareThreshold=1 in the URL makes it one from the first
// execution) `repeat` times, `pauseMs` apart, and prints one JSON line: which node answered each
// time, whether the statement was server-prepared, and every error (SQLSTATE and message).
//
//   java -cp /usr/share/java/postgresql.jar:<dir> PgjdbcProbe '<jdbc url>' [repeat] [pauseMs]
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.SQLException;
import java.util.ArrayList;
import java.util.List;
import org.postgresql.PGStatement;

public final class PgjdbcProbe {
  private static String quote(String s) {
    if (s == null) return "null";
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  private static String error(int at, SQLException e) {
    return "{\"at\":" + at + ",\"sqlstate\":" + quote(e.getSQLState()) + ",\"message\":" + quote(e.getMessage()) + "}";
  }

  public static void main(String[] args) throws Exception {
    String url = args[0];
    int repeat = args.length > 1 ? Integer.parseInt(args[1]) : 3;
    long pauseMs = args.length > 2 ? Long.parseLong(args[2]) : 0;
    List<String> results = new ArrayList<>();
    List<String> errors = new ArrayList<>();
    boolean connected = false;
    boolean serverPrepared = false;
    try (Connection conn = DriverManager.getConnection(url)) {
      connected = true;
      conn.setAutoCommit(true);
      try (PreparedStatement ps = conn.prepareStatement("SELECT ?::int + 1, inet_server_port(), pg_is_in_recovery()")) {
        for (int i = 0; i < repeat; i++) {
          try {
            ps.setInt(1, i);
            try (ResultSet rs = ps.executeQuery()) {
              rs.next();
              results.add("{\"sum\":" + rs.getInt(1) + ",\"port\":" + rs.getInt(2) + ",\"in_recovery\":" + rs.getBoolean(3) + "}");
            }
            serverPrepared |= ps.unwrap(PGStatement.class).isUseServerPrepare();
          } catch (SQLException e) {
            errors.add(error(i, e));
          }
          if (pauseMs > 0) Thread.sleep(pauseMs);
        }
      }
    } catch (SQLException e) {
      errors.add(error(-1, e));
    }
    System.out.println("{\"driver\":\"pgjdbc\",\"connected\":" + connected + ",\"server_prepared\":" + serverPrepared
        + ",\"results\":[" + String.join(",", results) + "],\"errors\":[" + String.join(",", errors) + "]}");
  }
}
